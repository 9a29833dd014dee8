// In the ADX cluster's resource group: Database Admin for the healer on the target databases
// only (database-level principal assignments; no cluster role), and optionally the diagnostic
// setting that sends FailedIngestion and Journal (ADXJournal) to the workspace.
param clusterName string
param databases array
param healerClientId string
param enableDiagnostics bool
param workspaceId string

resource cluster 'Microsoft.Kusto/clusters@2023-08-15' existing = {
  name: clusterName
}

resource admins 'Microsoft.Kusto/clusters/databases/principalAssignments@2023-08-15' = [for db in databases: {
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
