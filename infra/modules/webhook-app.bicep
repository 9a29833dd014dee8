// The Entra application an action group's secure webhook gets its token for (Microsoft Graph Bicep
// extension). Its identifier URI is what the action group asks a token for; the token's `aud` is
// that URI (v1) or the application's client id (v2, pinned below), and the healer accepts both.
// The first-party action groups application (461e8683-5575-4561-ac7f-899cc907d62a, per
// Microsoft's "Action groups" secure webhook script) must hold the app role
// ActionGroupsSecureWebhook, which the healer requires in the token.
//
// Every resource here is idempotent on a second deployment:
// - the application and its service principal are upserts keyed by uniqueName / appId;
// - the deployer is an owner ("The service principal must be assigned an owner role of the
//   Microsoft Entra application to be able to create, modify, or test the secure webhook action";
//   otherwise AadWebhookResourceNotOwnedByCaller). `owners` appends by default (Graph Bicep,
//   "relationships"), so other owners are kept;
// - the action groups service principal is Microsoft's: referenced `existing`, never written
//   (re-applying it needs rights some tenants withhold). The preprovision hook creates it where the
//   tenant lacks it (hooks/preprovision.py);
// - the app-role assignment is not declared here: a Graph Bicep appRoleAssignedTo that already
//   exists fails a redeploy (microsoftgraph/msgraph-bicep-types#161). The postprovision hook lists
//   the assignments and adds this one only where it is missing (hooks/postprovision.py).
extension microsoftGraphV1

param uniqueName string
param identifierUri string

var actionGroupsAppId = '461e8683-5575-4561-ac7f-899cc907d62a'
var roleName = 'ActionGroupsSecureWebhook'
// A role id derived from the name only: the same on every deployment.
var roleId = guid(uniqueName, roleName)

resource application 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: uniqueName
  signInAudience: 'AzureADMyOrg'
  identifierUris: [identifierUri]
  owners: {
    relationships: [deployer().objectId]
  }
  // Microsoft's tip for secure webhooks: v2 tokens (`aud` is the client id, `azp` the caller).
  api: {
    requestedAccessTokenVersion: 2
  }
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
  owners: {
    relationships: [deployer().objectId]
  }
}

resource actionGroupsPrincipal 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: actionGroupsAppId
}

output objectId string = application.id
output appId string = application.appId
output principalId string = webhookPrincipal.id
output roleId string = roleId
output actionGroupsPrincipalId string = actionGroupsPrincipal.id
