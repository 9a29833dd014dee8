// Flex Consumption Function App (Python 3.11, Functions 4.x) running as the user-assigned identity.
// Every %NAME% that function_app.py binds to is an app setting here (the host reads app settings
// only); tests/unit/test_infra_consistency.py keeps it so.
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string
@description('The storage account\'s blob, queue and table endpoints (https://…/).')
param storageEndpoints object
param deploymentContainerUrl string
param appInsightsName string
param healerMode string
param healerTargets array
param healerApps array
param timerSchedule string
param refreshWaitSeconds int
param toggleExport bool
param backfill string
param backfillInvocationSeconds int
param logsWorkspaceCustomerId string
@description('HEALER_ALERT_AUDIENCE: identifier URI of the secure webhook\'s Entra application; empty: /api/alerts refuses every call.')
param alertAudience string
@description('HEALER_ALERT_CLIENT_ID: that application\'s client id, the `aud` of a v2 token.')
param alertClientId string
param alertTenantId string

@secure()
param notifyWebhook string

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
        // The host's storage, by identity, with the service URIs (as the official Flex samples).
        { name: 'AzureWebJobsStorage__blobServiceUri', value: storageEndpoints.blob }
        { name: 'AzureWebJobsStorage__queueServiceUri', value: storageEndpoints.queue }
        { name: 'AzureWebJobsStorage__tableServiceUri', value: storageEndpoints.table }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: identityClientId }
        // Telemetry with Entra auth: Application Insights has local auth disabled.
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsights.properties.ConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identityClientId};Authorization=AAD' }
        { name: 'HEALER_MODE', value: healerMode }
        { name: 'HEALER_TARGETS', value: string(healerTargets) }
        { name: 'HEALER_APPS', value: string(healerApps) }
        { name: 'HEALER_TIMER_SCHEDULE', value: timerSchedule }
        { name: 'HEALER_QUEUE_NAME', value: 'healer-remediations' }
        { name: 'HEALER_REFRESH_WAIT_SECONDS', value: string(refreshWaitSeconds) }
        { name: 'HEALER_TOGGLE_EXPORT', value: string(toggleExport) }
        { name: 'HEALER_BACKFILL', value: backfill }
        { name: 'HEALER_BACKFILL_INVOCATION_SECONDS', value: string(backfillInvocationSeconds) }
        { name: 'HEALER_REMEDY_ORDER', value: 'recreate-destination,refresh' }
        { name: 'HEALER_UNKNOWN_IDENTITY_RETRY_SECONDS', value: '600' }
        { name: 'HEALER_IDENTITY_CLIENT_ID', value: identityClientId }
        { name: 'HEALER_STORAGE_ACCOUNT_NAME', value: storageAccountName }
        { name: 'HEALER_LOG_ANALYTICS_WORKSPACE_ID', value: logsWorkspaceCustomerId }
        { name: 'HEALER_ALERT_AUDIENCE', value: alertAudience }
        { name: 'HEALER_ALERT_CLIENT_ID', value: alertClientId }
        { name: 'HEALER_ALERT_TENANT_ID', value: alertTenantId }
        { name: 'HEALER_NOTIFY_WEBHOOK', value: notifyWebhook }
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
