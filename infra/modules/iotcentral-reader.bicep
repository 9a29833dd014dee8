// Reader on one IoT Central app, so the healer can see which managed identity it has now.
param appName string
param principalId string

var reader = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'

resource app 'Microsoft.IoTCentral/iotApps@2021-06-01' existing = {
  name: appName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(app.id, principalId, reader)
  scope: app
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', reader)
  }
}
