// Storage account for the Functions host (AzureWebJobsStorage), the Flex Consumption
// deployment package container, the identity-mapping table and (with the optional Event Grid
// subscriptions) their dead-letter container. Shared keys are disabled: every client (host,
// app, azd deploy, developers, Event Grid) authenticates with Microsoft Entra ID.
param name string
param location string = resourceGroup().location
param tags object = {}
param deploymentContainerName string
param tableName string = 'AcsIdentities'

@description('Blob container for events the Event Grid subscriptions dead-letter. Empty: not created.')
param deadLetterContainerName string = ''

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    dnsEndpointType: 'Standard'
    minimumTlsVersion: 'TLS1_2'
    publicNetworkAccess: 'Enabled'
    supportsHttpsTrafficOnly: true
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Event Grid writes undeliverable events here with the topic's managed identity
// (deadLetterWithResourceIdentity, see app/eventing.bicep).
resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (!empty(deadLetterContainerName)) {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// The app also creates this table on first use if it is missing.
resource identityTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: tableName
}

output name string = storage.name
output resourceId string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output tableName string = identityTable.name
output deploymentContainerName string = deploymentContainer.name
output deadLetterContainerName string = !empty(deadLetterContainerName) ? deadLetterContainer.name : ''
