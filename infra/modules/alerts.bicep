// Alerts that start a remediation in seconds: a log alert on FailedIngestion (the refusals the
// healer repairs) and a metric alert per IoT Central app on dataExport.error, both through an action
// group whose secure webhook calls /api/alerts with the common alert schema. The same action group
// tells people of the healer's incidents (incident-alerts.bicep; optional email receivers).
param location string
param tags object
param functionAppName string
param workspaceId string
param iotCentralAppIds array
param appInsightsName string

@description('Email addresses the action group also notifies (incidents of the healer, and the alerts above).')
param alertEmails array = []

@description('Object id of the Entra application the secure webhook gets its token for (webhook-app.bicep).')
param webhookAppObjectId string

@description('Its identifier URI: the token\'s audience, HEALER_ALERT_AUDIENCE.')
param webhookIdentifierUri string

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

// A secure webhook: no key in the URL (anyone with Reader on the action group could read one);
// the action group sends an Entra token that the healer validates (shared/http/webhook_auth.py).
resource group 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-iotc-adx-healer'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'iotchealer'
    enabled: true
    webhookReceivers: [
      {
        name: 'healer'
        serviceUri: 'https://${site.properties.defaultHostName}/api/alerts'
        useCommonAlertSchema: true
        useAadAuth: true
        objectId: webhookAppObjectId
        identifierUri: webhookIdentifierUri
        tenantId: tenant().tenantId
      }
    ]
    emailReceivers: [for (address, i) in alertEmails: {
      name: 'email-${i}'
      emailAddress: address
      useCommonAlertSchema: true
    }]
  }
}

module incidentAlerts 'incident-alerts.bicep' = {
  name: 'incident-alerts'
  params: {
    location: location
    tags: tags
    appInsightsName: appInsightsName
    actionGroupId: group.id
  }
}

resource failedIngestion 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'iotc-adx-healer-failed-ingestion'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'ADX ingestion refused (Forbidden, database or table access denied)'
    severity: 2
    enabled: true
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    scopes: [workspaceId]
    criteria: {
      allOf: [
        {
          // The error codes shared/domain/diagnosis.py treats as a lost permission. No summarize: the
          // rule counts and splits by the dimensions (Microsoft's log-alert query guidance).
          query: 'FailedIngestion | where ErrorCode in ("Forbidden", "BadRequest_DatabaseAccessDenied", "BadRequest_TableAccessDenied") | project TimeGenerated, Database, Table, ErrorCode, _ResourceId'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          // _ResourceId: the cluster, so clusters that share a workspace are told apart.
          dimensions: [
            { name: 'Database', operator: 'Include', values: ['*'] }
            { name: 'Table', operator: 'Include', values: ['*'] }
            { name: 'ErrorCode', operator: 'Include', values: ['*'] }
            { name: '_ResourceId', operator: 'Include', values: ['*'] }
          ]
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    autoMitigate: true
    // A workspace gets its FailedIngestion table with the first row; validation would fail before.
    skipQueryValidation: true
    actions: { actionGroups: [group.id] }
  }
}

resource exportErrors 'Microsoft.Insights/metricAlerts@2018-03-01' = [for (appId, i) in iotCentralAppIds: {
  name: 'iotc-adx-healer-export-error-${i}'
  location: 'global'
  tags: tags
  properties: {
    description: 'IoT Central data export errors'
    severity: 2
    enabled: true
    scopes: [appId]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT5M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'dataExportError'
          metricNamespace: 'Microsoft.IoTCentral/IoTApps'
          metricName: 'dataExport.error'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
          dimensions: [
            { name: 'exportId', operator: 'Include', values: ['*'] }
            { name: 'destinationId', operator: 'Include', values: ['*'] }
          ]
        }
      ]
    }
    autoMitigate: true
    actions: [{ actionGroupId: group.id }]
  }
}]

output actionGroupId string = group.id
