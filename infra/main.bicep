// iotc-adx-healer: Function App (Flex Consumption, Python 3.11) with a user-assigned identity,
// identity-only storage, monitoring, and least-privilege access to the ADX databases it heals.
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('azd environment name; names and tags derive from it.')
param environmentName string

// Flex Consumption runs in these regions only (the list the official azd Flex Consumption
// samples allow; Azure-Samples/functions-quickstart-python-http-azd). azd offers only these.
@minLength(1)
@description('Region of the healer\'s resources (a Flex Consumption region).')
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({ azd: { type: 'location' } })
param location string

@allowed(['observe', 'enforce'])
@description('observe plans and records only; enforce repairs.')
param healerMode string = 'observe'

// Arrays, not strings: azd (>= 1.23.4, required in azure.yaml) encodes an array or object value
// from the environment into main.parameters.json as JSON; a string parameter would take it raw.
@description('HEALER_TARGETS: targets (see docs/configuration.md).')
param healerTargets array = []

@description('HEALER_APPS: IoT Central apps whose ADX destinations are discovered.')
param healerApps array = []

@description('NCRONTAB (six fields, UTC) of the detection timer.')
param timerSchedule string = '0 */5 * * * *'

@minValue(0)
@maxValue(3600)
param refreshWaitSeconds int = 60

@description('Disable and re-enable the export after a repair.')
param toggleExport bool = false

@description('After a verified healing: off, plan (measure the gap, record what would be ingested) or on (ingest it).')
@allowed([
  'off'
  'plan'
  'on'
])
param backfill string = 'plan'

@description('Seconds one queue invocation spends on a backfill before the next message continues it.')
@minValue(5)
@maxValue(540)
param backfillInvocationSeconds int = 120

@description('Resource id of the ADX cluster the targets write to.')
param adxClusterResourceId string

@description('Comma-separated ADX databases the healer may repair (it gets Database Admin on each, nothing else).')
param adxDatabases string

@description('Also grant the ADX database roles in the template (for deployments without azd\'s postprovision hook, once the healer\'s identity exists); the hook grants them either way.')
param adxRolesInTemplate bool = false

@description('Resource id of the Log Analytics workspace that holds (or will hold) the ADX diagnostic logs. Empty: the healer creates its own workspace and uses it.')
param adxLogsWorkspaceResourceId string = ''

@description('Send the ADX cluster\'s FailedIngestion and Journal logs to the workspace.')
param enableAdxDiagnostics bool = false

@description('Comma-separated resource ids of the IoT Central apps (Reader, so the healer can see their managed identity; optional metric alerts).')
param iotCentralAppIds string = ''

@description('Create the FailedIngestion log alert and the IoT Central dataExport.error metric alerts, calling /api/alerts through a secure webhook (needs rights to create an Entra application), and the alert on the healer\'s incidents.')
param enableAlerts bool = false

@description('Comma-separated email addresses the action group notifies of incidents (with enableAlerts).')
param alertEmails string = ''

@secure()
@description('HEALER_NOTIFY_WEBHOOK: an incoming webhook (Teams/Slack style) told of every incident; empty: none.')
param notifyWebhook string = ''

var tags = { 'azd-env-name': environmentName }
var token = toLower(uniqueString(subscription().id, environmentName, location))
var databases = filter(map(split(adxDatabases, ','), d => trim(d)), d => !empty(d))
var appIds = filter(map(split(iotCentralAppIds, ','), a => trim(a)), a => !empty(a))
var emails = filter(map(split(alertEmails, ','), e => trim(e)), e => !empty(e))
var adxSubscription = split(adxClusterResourceId, '/')[2]
var adxResourceGroup = split(adxClusterResourceId, '/')[4]
var adxClusterName = last(split(adxClusterResourceId, '/'))
// The Entra application an action group's secure webhook gets its token for; its identifier
// URI is the audience the healer checks (HEALER_ALERT_AUDIENCE). Empty: the webhook refuses all.
var webhookAppName = 'iotc-adx-healer-webhook-${token}'
var alertAudience = enableAlerts ? 'api://${tenant().tenantId}/${webhookAppName}' : ''

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-healer-${token}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    workspaceName: 'log-healer-${token}'
    appInsightsName: 'appi-healer-${token}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'sthealer${take(token, 14)}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
  }
}

// Application Insights takes telemetry from the healer's identity only (local auth is off).
module monitoringAccess 'modules/monitoring-access.bicep' = {
  name: 'monitoring-access'
  scope: rg
  params: {
    appInsightsName: monitoring.outputs.appInsightsName
    principalId: identity.outputs.principalId
  }
}

// The workspace that holds the ADX diagnostic logs: an existing one, or the healer's own.
var ownWorkspace = empty(adxLogsWorkspaceResourceId)
var logsWorkspaceSubscription = ownWorkspace ? subscription().subscriptionId : split(adxLogsWorkspaceResourceId, '/')[2]
var logsWorkspaceResourceGroup = ownWorkspace ? rg.name : split(adxLogsWorkspaceResourceId, '/')[4]
var logsWorkspaceName = ownWorkspace ? 'log-healer-${token}' : last(split(adxLogsWorkspaceResourceId, '/'))

module workspaceReader 'modules/workspace-reader.bicep' = {
  name: 'workspace-reader'
  scope: resourceGroup(logsWorkspaceSubscription, logsWorkspaceResourceGroup)
  dependsOn: [monitoring]
  params: {
    workspaceName: logsWorkspaceName
    principalId: identity.outputs.principalId
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    name: 'func-healer-${token}'
    planName: 'plan-healer-${token}'
    location: location
    tags: union(tags, { 'azd-service-name': 'healer' })
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageEndpoints: storage.outputs.endpoints
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    appInsightsName: monitoring.outputs.appInsightsName
    healerMode: healerMode
    healerTargets: healerTargets
    healerApps: healerApps
    timerSchedule: timerSchedule
    refreshWaitSeconds: refreshWaitSeconds
    toggleExport: toggleExport
    backfill: backfill
    backfillInvocationSeconds: backfillInvocationSeconds
    logsWorkspaceCustomerId: workspaceReader.outputs.customerId
    alertAudience: alertAudience
    alertClientId: enableAlerts ? webhookApp.outputs.appId : ''
    alertTenantId: enableAlerts ? tenant().tenantId : ''
    notifyWebhook: notifyWebhook
  }
  dependsOn: [monitoringAccess]
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    appInsightsName: monitoring.outputs.appInsightsName
  }
}

// Entra replicates a new identity within minutes; an ADX principal assignment made before that
// fails ("principal not found"). azd's postprovision hook grants the database roles and waits for
// replication (hooks/provisioning.py); the template grants them only with adxRolesInTemplate.
module adxAccess 'modules/adx-access.bicep' = {
  name: 'adx-access'
  scope: resourceGroup(adxSubscription, adxResourceGroup)
  params: {
    clusterName: adxClusterName
    databases: databases
    healerClientId: identity.outputs.clientId
    grantRoles: adxRolesInTemplate
    enableDiagnostics: enableAdxDiagnostics
    workspaceId: workspaceReader.outputs.id
  }
}

module appReaders 'modules/iotcentral-reader.bicep' = [for (appId, i) in appIds: {
  name: 'iotc-reader-${i}'
  scope: resourceGroup(split(appId, '/')[2], split(appId, '/')[4])
  params: {
    appName: last(split(appId, '/'))
    principalId: identity.outputs.principalId
  }
}]

module webhookApp 'modules/webhook-app.bicep' = if (enableAlerts) {
  name: 'webhook-app'
  scope: rg
  params: {
    uniqueName: webhookAppName
    identifierUri: alertAudience
  }
}

module alerts 'modules/alerts.bicep' = if (enableAlerts) {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    functionAppName: functionApp.outputs.name
    workspaceId: workspaceReader.outputs.id
    iotCentralAppIds: appIds
    webhookAppObjectId: webhookApp.outputs.objectId
    webhookIdentifierUri: alertAudience
    appInsightsName: monitoring.outputs.appInsightsName
    alertEmails: emails
  }
}

// More modules (a workbook, further alert rules) go here, scoped to `rg`; alerts.outputs.actionGroupId
// is the action group that calls the healer.

output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_URL string = functionApp.outputs.url
output HEALER_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output HEALER_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_LOG_ANALYTICS_WORKSPACE_ID string = workspaceReader.outputs.id
output HEALER_ALERT_AUDIENCE string = alertAudience
output HEALER_WORKBOOK_ID string = workbook.outputs.workbookId
// Read by the postprovision hook (hooks/provisioning.py).
output HEALER_TENANT_ID string = tenant().tenantId
output ADX_CLUSTER_ID string = adxAccess.outputs.clusterId
output WEBHOOK_PRINCIPAL_ID string = enableAlerts ? webhookApp.outputs.principalId : ''
output WEBHOOK_APP_ROLE_ID string = enableAlerts ? webhookApp.outputs.roleId : ''
output ACTION_GROUPS_PRINCIPAL_ID string = enableAlerts ? webhookApp.outputs.actionGroupsPrincipalId : ''
