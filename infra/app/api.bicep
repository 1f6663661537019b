// The token service: a Python 3.12 Function App on Flex Consumption that runs as a
// user-assigned managed identity. Every connection below is identity-based; no app setting
// holds a key, a SAS or a connection string with a secret.
param name string
param location string = resourceGroup().location
param tags object = {}

// Reference properties
param appServicePlanId string
param storageAccountName string
param deploymentStorageContainerName string
param applicationInsightsName string
param identityId string
param identityClientId string
param communicationServicesName string

// Runtime properties
@allowed([
  'python'
])
param runtimeName string = 'python'
@allowed([
  '3.11'
  '3.12'
])
param runtimeVersion string = '3.12'
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

// Application settings (read by shared/config.py)
param identityTableName string
param authMode string
param authIssuer string
param authAudience string
param adminRole string
param allowedScopes string
param defaultScopes string
param tokenLifetimeMinutes int
param deletionGraceMinutes int
param purgeSchedule string
param eventActions string

// Browser access (platform CORS): comma-separated origins, '*' for any, '' for none
param allowedOrigins string = ''

// ' a , b ,' -> ['a', 'b']; '' -> [] (an empty list: the platform adds no CORS headers)
var corsAllowedOrigins = filter(map(split(allowedOrigins, ','), origin => trim(origin)), origin => !empty(origin))

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource communicationService 'Microsoft.Communication/communicationServices@2025-05-01' existing = {
  name: communicationServicesName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: appServicePlanId
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      // CORS is platform configuration on Azure (the app sets no CORS headers). Callers send
      // a bearer token in Authorization, not cookies, so credentialed CORS stays off; that
      // also keeps '*' legal (browsers refuse '*' with credentials).
      cors: {
        allowedOrigins: corsAllowedOrigins
        supportCredentials: false
      }
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentStorageContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: runtimeName
        version: runtimeVersion
      }
    }
  }
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: {
    // Functions host storage, identity-based (no AzureWebJobsStorage connection string)
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
    AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
    AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
    // Telemetry with Microsoft Entra authentication (App Insights local auth is disabled)
    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
    // DefaultAzureCredential picks the user-assigned identity
    AZURE_CLIENT_ID: identityClientId
    // Azure Communication Services, Entra ID auth (ACS access keys are disabled)
    COMMUNICATION_SERVICES_ENDPOINT: 'https://${communicationService.properties.hostName}/'
    // Identity-mapping table
    IDENTITY_TABLE_SERVICE_URI: 'https://${storage.name}.table.${environment().suffixes.storage}'
    IDENTITY_TABLE_NAME: identityTableName
    // Caller authentication and token policy
    AUTH_MODE: authMode
    AUTH_ISSUER: authIssuer
    AUTH_AUDIENCE: authAudience
    AUTH_ADMIN_ROLE: adminRole
    ALLOWED_SCOPES: allowedScopes
    DEFAULT_SCOPES: defaultScopes
    TOKEN_LIFETIME_MINUTES: string(tokenLifetimeMinutes)
    DELETION_GRACE_MINUTES: string(deletionGraceMinutes)
    PURGE_SCHEDULE: purgeSchedule
    // A delete's delayed second revoke: a message on this queue of the AzureWebJobsStorage
    // account (identity-based via AzureWebJobsStorage__queueServiceUri), read by the
    // revoke_after_delete trigger. The trigger needs Storage Queue Data Reader + Message
    // Processor, sending needs Message Sender (learn.microsoft.com/azure/azure-functions/
    // functions-bindings-storage-queue#grant-permission-to-the-identity); the identity's
    // Storage Queue Data Contributor (rbac.bicep) includes all three
    REVOKE_QUEUE_NAME: 'acs-revoke-after-delete'
    EVENT_ACTIONS: eventActions
  }
}

// Publishing with basic (user/password) credentials is disabled; azd deploys with Entra ID.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

output SERVICE_API_NAME string = functionApp.name
output resourceId string = functionApp.id
output defaultHostName string = functionApp.properties.defaultHostName
output uri string = 'https://${functionApp.properties.defaultHostName}/api'
