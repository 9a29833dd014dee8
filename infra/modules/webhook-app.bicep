// The Entra application an action group's secure webhook asks a token for (Microsoft Graph Bicep
// extension). Its identifier URI is the token's audience; the first-party action groups
// application (461e8683-5575-4561-ac7f-899cc907d62a, per Microsoft's "Action groups" secure
// webhook script) gets the app role ActionGroupsSecureWebhook, which the healer requires in the
// token. Deploying this needs Entra rights to create applications and grant app roles.
extension microsoftGraphV1

param uniqueName string
param identifierUri string

var actionGroupsAppId = '461e8683-5575-4561-ac7f-899cc907d62a'
var roleName = 'ActionGroupsSecureWebhook'
var roleId = guid(uniqueName, roleName)

resource application 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: uniqueName
  signInAudience: 'AzureADMyOrg'
  identifierUris: [identifierUri]
  appRoles: [
    {
      id: roleId
      value: roleName
      displayName: roleName
      description: 'Azure Monitor action groups may call the healer\'s alert webhook.'
      allowedMemberTypes: ['Application']
      isEnabled: true
    }
  ]
}

resource webhookPrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: application.appId
}

// Created in the tenant if it is not there yet (Microsoft's script does the same).
resource actionGroupsPrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: actionGroupsAppId
}

resource grant 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  appRoleId: roleId
  principalId: actionGroupsPrincipal.id
  resourceId: webhookPrincipal.id
}

output objectId string = application.id
