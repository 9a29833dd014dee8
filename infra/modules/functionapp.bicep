// Flex Consumption Function App (Python 3.11, Functions 4.x) running as the user-assigned identity.
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerUrl string
param appInsightsName string
param healerMode string
param healerTargets string
param healerApps string
param timerSchedule string
param refreshWaitSeconds int
param toggleExport bool
param logsWorkspaceCustomerId string

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      appSettings: [
        { name: 'AzureWebJobsStorage__accountName', value: storageAccountName }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: identityClientId }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsights.properties.ConnectionString }
        { name: 'HEALER_MODE', value: healerMode }
        { name: 'HEALER_TARGETS', value: healerTargets }
        { name: 'HEALER_APPS', value: healerApps }
        { name: 'HEALER_TIMER_SCHEDULE', value: timerSchedule }
        { name: 'HEALER_REFRESH_WAIT_SECONDS', value: string(refreshWaitSeconds) }
        { name: 'HEALER_TOGGLE_EXPORT', value: string(toggleExport) }
        { name: 'HEALER_IDENTITY_CLIENT_ID', value: identityClientId }
        { name: 'HEALER_LOG_ANALYTICS_WORKSPACE_ID', value: logsWorkspaceCustomerId }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: 40
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

output name string = site.name
output url string = 'https://${site.properties.defaultHostName}'
