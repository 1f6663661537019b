targetScope = 'subscription'

// ---- azd environment ------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used for the resource group name and a unique resource token.')
param environmentName string

@minLength(1)
@description('Primary location for all resources. Must be a region that offers Flex Consumption.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object ID of the user (or service principal) running azd; gets data-plane roles for local development. Set by azd from AZURE_PRINCIPAL_ID.')
param principalId string = ''

@description('Type of principalId.')
@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

// ---- Optional resource names ---------------------------------------------------------------

param resourceGroupName string = ''
param functionAppName string = ''
param appServicePlanName string = ''
param userAssignedIdentityName string = ''
param storageAccountName string = ''
param applicationInsightsName string = ''
param logAnalyticsName string = ''
param communicationServicesName string = ''
param eventGridTopicName string = ''

// ---- Azure Communication Services -----------------------------------------------------------

@description('Data location of the ACS resource (data at rest). Cannot be changed after creation.')
param communicationServicesDataLocation string = 'United States'

@description('Built-in role granted on ACS to the app identity and the deploying user. See docs/deploy.md.')
@allowed([
  'Contributor'
  'CommunicationAndEmailServiceOwner'
])
param communicationServicesRole string = 'Contributor'

// ---- Token service settings ------------------------------------------------------------------

@description('How callers authenticate to the token service (AUTH_MODE): jwt (validated by the app) or easyauth (App Service Authentication in front of the app).')
@allowed([
  'jwt'
  'easyauth'
])
param authMode string = 'jwt'

@description('Expected issuer (iss) of caller JWTs, e.g. https://login.microsoftonline.com/<tenant-id>/v2.0 (AUTH_ISSUER).')
param authIssuer string

@description('Expected audience(s) (aud) of caller JWTs, comma-separated, e.g. api://<client-id> (AUTH_AUDIENCE).')
param authAudience string

@description('App role that grants administrative operations (AUTH_ADMIN_ROLE).')
param adminRole string = 'TokenService.Admin'

@description('Comma-separated ACS token scopes callers may request (ALLOWED_SCOPES).')
param allowedScopes string = 'chat,voip'

@description('Comma-separated ACS token scopes issued when a caller asks for none (DEFAULT_SCOPES).')
param defaultScopes string = 'chat,voip'

@description('Lifetime of issued ACS tokens in minutes; ACS accepts 60-1440 (TOKEN_LIFETIME_MINUTES).')
@minValue(60)
@maxValue(1440)
param tokenLifetimeMinutes int = 1440

@description('Minutes between a deletion request and the purge of the ACS identity (DELETION_GRACE_MINUTES).')
@minValue(0)
param deletionGraceMinutes int = 1440

@description('NCRONTAB schedule of the purge timer (PURGE_SCHEDULE).')
param purgeSchedule string = '0 */5 * * * *'

@description('What on_user_event does per event type: comma list of EventType=revoke|delete (EVENT_ACTIONS).')
param eventActions string = 'Microsoft.Graph.UserDeleted=delete,Microsoft.Graph.UserUpdated=revoke,TokenService.RevokeTokens=revoke,TokenService.DeleteUser=delete'

@description('Name of the identity-mapping table (IDENTITY_TABLE_NAME).')
param identityTableName string = 'AcsIdentities'

@description('Browser origins allowed to call the API cross-origin, comma-separated, e.g. https://app.contoso.com,http://localhost:5173 (ALLOWED_ORIGINS); "*" allows any origin; empty: no cross-origin access. Platform CORS: siteConfig.cors.allowedOrigins.')
param allowedOrigins string = ''

// ---- Flex Consumption scale --------------------------------------------------------------

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

// ---- Events ------------------------------------------------------------------------------

@description('Create a custom Event Grid topic (CloudEvents 1.0) for TokenService.RevokeTokens / TokenService.DeleteUser events, subscribed to on_user_event. Enable after the first deployment.')
param enableCustomEvents bool = false

@description('Authorize Microsoft Graph to create an Event Grid partner topic here and, once graphPartnerTopicName is set, subscribe on_user_event to it.')
param enableGraphEvents bool = false

@description('Name of the partner topic created by the Microsoft Graph subscription; empty until that subscription exists.')
param graphPartnerTopicName string = ''

// ---- Names -------------------------------------------------------------------------------

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var appName = !empty(functionAppName) ? functionAppName : '${abbrs.webSitesFunctions}api-${resourceToken}'
var deploymentStorageContainerName = 'app-package-${take(appName, 32)}-${take(toLower(uniqueString(appName, resourceToken)), 7)}'
var enableEvents = enableCustomEvents || enableGraphEvents
// Blob container (in the app's storage account) for events the Event Grid subscriptions cannot deliver
var eventGridDeadLetterContainerName = 'eventgrid-deadletter'

resource rg 'Microsoft.Resources/resourceGroups@2021-04-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity './core/identity/user-assigned-identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: !empty(userAssignedIdentityName) ? userAssignedIdentityName : '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage './core/storage/storage-account.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: !empty(storageAccountName) ? storageAccountName : '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentStorageContainerName
    tableName: identityTableName
    deadLetterContainerName: enableEvents ? eventGridDeadLetterContainerName : ''
  }
}

module monitoring './core/monitor/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: !empty(logAnalyticsName) ? logAnalyticsName : '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: !empty(applicationInsightsName) ? applicationInsightsName : '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module communication './core/communication/communication-services.bicep' = {
  name: 'communication'
  scope: rg
  params: {
    name: !empty(communicationServicesName) ? communicationServicesName : '${abbrs.communicationServices}${resourceToken}'
    tags: tags
    dataLocation: communicationServicesDataLocation
  }
}

module appServicePlan './core/host/appserviceplan.bicep' = {
  name: 'appserviceplan'
  scope: rg
  params: {
    name: !empty(appServicePlanName) ? appServicePlanName : '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
  }
}

module api './app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: appName
    location: location
    tags: tags
    appServicePlanId: appServicePlan.outputs.resourceId
    storageAccountName: storage.outputs.name
    deploymentStorageContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    identityId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    communicationServicesName: communication.outputs.name
    runtimeName: 'python'
    runtimeVersion: '3.12'
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    identityTableName: storage.outputs.tableName
    authMode: authMode
    authIssuer: authIssuer
    authAudience: authAudience
    adminRole: adminRole
    allowedScopes: allowedScopes
    defaultScopes: defaultScopes
    tokenLifetimeMinutes: tokenLifetimeMinutes
    deletionGraceMinutes: deletionGraceMinutes
    purgeSchedule: purgeSchedule
    eventActions: eventActions
    allowedOrigins: allowedOrigins
  }
  // The identity needs its storage roles before the platform fetches the deployment package.
  dependsOn: [
    rbac
  ]
}

module rbac './app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    communicationServicesName: communication.outputs.name
    managedIdentityPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
    communicationServicesRole: communicationServicesRole
  }
}

module eventing './app/eventing.bicep' = if (enableEvents) {
  name: 'eventing'
  scope: rg
  params: {
    location: location
    tags: tags
    functionAppName: api.outputs.SERVICE_API_NAME
    enableCustomEvents: enableCustomEvents
    customTopicName: !empty(eventGridTopicName) ? eventGridTopicName : '${abbrs.eventGridDomainsTopics}${resourceToken}'
    enableGraphEvents: enableGraphEvents
    graphPartnerTopicName: graphPartnerTopicName
    publisherPrincipalId: principalId
    publisherPrincipalType: principalType
    storageAccountName: storage.outputs.name
    deadLetterContainerName: storage.outputs.deadLetterContainerName
  }
}

// ---- Outputs (written to the azd environment) ----------------------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.SERVICE_API_NAME
output AZURE_FUNCTION_NAME string = api.outputs.SERVICE_API_NAME
output SERVICE_API_NAME string = api.outputs.SERVICE_API_NAME
output AZURE_FUNCTION_URI string = api.outputs.uri
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output COMMUNICATION_SERVICES_ENDPOINT string = communication.outputs.endpoint
output COMMUNICATION_SERVICES_NAME string = communication.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output IDENTITY_TABLE_SERVICE_URI string = 'https://${storage.outputs.name}.table.${environment().suffixes.storage}'
output IDENTITY_TABLE_NAME string = storage.outputs.tableName
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output EVENT_GRID_TOPIC_NAME string = enableCustomEvents ? eventing.outputs.customTopicName : ''
output EVENT_GRID_TOPIC_ENDPOINT string = enableCustomEvents ? eventing.outputs.customTopicEndpoint : ''
output EVENT_GRID_DEADLETTER_CONTAINER string = enableEvents ? storage.outputs.deadLetterContainerName : ''
