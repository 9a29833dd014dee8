// An Azure Monitor workbook over the healer's own telemetry (Application Insights): remediations
// over time by outcome, time to heal, data gaps and recovered rows, escalations, top root causes,
// incidents. Its content is healer-workbook.json (Notebook/1.0), bound to the component here.
param location string
param tags object
param appInsightsName string

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// Workbook resource names must be GUIDs.
resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'iotc-adx-healer-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'iotc-adx-healer'
    category: 'workbook'
    sourceId: appInsights.id
    version: 'Notebook/1.0'
    serializedData: replace(loadTextContent('healer-workbook.json'), '__APP_INSIGHTS_ID__', appInsights.id)
  }
}

output workbookId string = workbook.id
