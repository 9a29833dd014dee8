// In the ADX cluster's resource group: Database Admin for the healer on the target databases
// only (database-level principal assignments; no cluster role), and optionally the diagnostic
// setting that sends FailedIngestion and Journal (ADXJournal) to the workspace.
//
// The assignments are made by azd's postprovision hook (hooks/provisioning.py), which waits until
// Entra has replicated the new identity to ADX: made here in the deployment that creates the
// identity, they fail ("principal not found") on a first run. grantRoles makes them here too, for
// deployments without the hook once the identity exists; the hook names them the same way
// (guid(cluster.id, db, healerClientId)) and leaves existing ones alone.
param clusterName string
param databases array
param healerClientId string
param grantRoles bool
param enableDiagnostics bool
param workspaceId string

resource cluster 'Microsoft.Kusto/clusters@2023-08-15' existing = {
  name: clusterName
}

// One at a time: a cluster may refuse concurrent principal changes.
@batchSize(1)
resource admins 'Microsoft.Kusto/clusters/databases/principalAssignments@2023-08-15' = [for db in (grantRoles ? databases : []): {
  name: '${clusterName}/${db}/${guid(cluster.id, db, healerClientId)}'
  properties: {
    principalId: healerClientId
    principalType: 'App'
    role: 'Admin'
    tenantId: tenant().tenantId
  }
}]

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (enableDiagnostics) {
  name: 'iotc-adx-healer'
  scope: cluster
  properties: {
    workspaceId: workspaceId
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      { category: 'FailedIngestion', enabled: true }
      { category: 'Journal', enabled: true }
    ]
  }
}

output clusterId string = cluster.id
