// Optional event sources for the `on_user_event` function:
//  * a custom Event Grid topic (CloudEvents 1.0) on which operators publish
//    TokenService.RevokeTokens / TokenService.DeleteUser events, and
//  * Microsoft Graph user change events, delivered through an Event Grid partner topic.
//
// Event subscriptions with an AzureFunction destination are validated against the deployed
// function, so enable these after the first `azd up` has deployed the code (see docs/deploy.md).
//
// Both subscriptions retry for 30 attempts / 24 hours and then dead-letter the event to a blob
// container in the app's storage account. Shared keys are disabled there, so Event Grid writes
// with the parent topic's system-assigned managed identity (deadLetterWithResourceIdentity),
// which gets Storage Blob Data Contributor on that container only.
param location string = resourceGroup().location
param tags object = {}

@description('Name of the Function App that hosts on_user_event.')
param functionAppName string

@description('Create the custom topic and its subscription.')
param enableCustomEvents bool = false
param customTopicName string = ''

@description('Authorize Microsoft Graph to create a partner topic in this resource group and, once graphPartnerTopicName is set, subscribe the function to it.')
param enableGraphEvents bool = false

@description('Name of the partner topic created by the Microsoft Graph subscription (empty until that subscription exists).')
param graphPartnerTopicName string = ''

@description('Principal (object) ID allowed to publish to the custom topic (the deploying user). Empty to skip.')
param publisherPrincipalId string = ''
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param publisherPrincipalType string = 'User'

@description('Storage account that holds the dead-letter container.')
param storageAccountName string

@description('Blob container (created by core/storage/storage-account.bicep) for dead-lettered events.')
param deadLetterContainerName string

@description('Used to compute the partner authorization expiry. Leave the default.')
param baseTime string = utcNow('u')

// Microsoft Graph API's well-known Event Grid partner registration
var graphPartnerName = 'MicrosoftGraphAPI'
var graphPartnerRegistrationImmutableId = 'c02e0126-707c-436d-b6a1-175d2748fb58'
var eventGridDataSenderRoleId = 'd5a91429-5739-47e2-a06b-3470a27159e7'
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var subscribeGraphTopic = enableGraphEvents && !empty(graphPartnerTopicName)

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deadLetterContainerName
}

// ---- Custom topic ------------------------------------------------------------------------------

resource customTopic 'Microsoft.EventGrid/topics@2025-02-15' = if (enableCustomEvents) {
  name: customTopicName
  location: location
  tags: tags
  // Used only to write dead-lettered events (delivery to the function needs no identity)
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource customTopicSubscription 'Microsoft.EventGrid/topics/eventSubscriptions@2025-02-15' = if (enableCustomEvents) {
  parent: customTopic
  name: 'on-user-event'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/on_user_event'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    filter: {
      includedEventTypes: [
        'TokenService.RevokeTokens'
        'TokenService.DeleteUser'
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storage.id
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
  dependsOn: [
    customTopicDeadLetterWriter
  ]
}

// The custom topic's identity writes dead-lettered events
resource customTopicDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableCustomEvents) {
  name: guid(deadLetterContainer.id, customTopic.id, storageBlobDataContributorRoleId)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: customTopic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Publishing uses Microsoft Entra ID (topic access keys are disabled)
resource publisherRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableCustomEvents && !empty(publisherPrincipalId)) {
  name: guid(resourceGroup().id, customTopicName, publisherPrincipalId, eventGridDataSenderRoleId)
  scope: customTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSenderRoleId)
    principalId: publisherPrincipalId
    principalType: publisherPrincipalType
  }
}

// ---- Microsoft Graph partner topic ----------------------------------------------------------

// Step 1: authorize Microsoft Graph to create partner topics in this resource group. The
// authorization only gates *creating* the topic; each `azd provision` renews it.
resource partnerConfiguration 'Microsoft.EventGrid/partnerConfigurations@2025-02-15' = if (enableGraphEvents) {
  name: 'default'
  location: 'global'
  properties: {
    partnerAuthorization: {
      defaultMaximumExpirationTimeInDays: 365
      authorizedPartnersList: [
        {
          partnerName: graphPartnerName
          partnerRegistrationImmutableId: graphPartnerRegistrationImmutableId
          authorizationExpirationTimeInUtc: dateTimeAdd(baseTime, 'P180D')
        }
      ]
    }
  }
}

// Step 2 (outside Bicep): the Microsoft Graph subscription creates the partner topic; activate it
// and enable its system-assigned identity. Microsoft Graph owns the topic, so it is PATCHed with
// `az rest` (docs/deploy.md) rather than redeclared here: a PUT would have to restate the
// partner-provided properties.
// Step 3: subscribe the function to the partner topic. The deployment fails on
// `identity.principalId` if step 2 did not enable the identity.
resource graphPartnerTopic 'Microsoft.EventGrid/partnerTopics@2025-02-15' existing = if (subscribeGraphTopic) {
  name: graphPartnerTopicName
}

resource graphTopicSubscription 'Microsoft.EventGrid/partnerTopics/eventSubscriptions@2025-02-15' = if (subscribeGraphTopic) {
  parent: graphPartnerTopic
  name: 'on-user-event'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/on_user_event'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    filter: {
      includedEventTypes: [
        'Microsoft.Graph.UserUpdated'
        'Microsoft.Graph.UserDeleted'
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storage.id
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
  dependsOn: [
    graphTopicDeadLetterWriter
  ]
}

// The partner topic's identity writes dead-lettered events
resource graphTopicDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (subscribeGraphTopic) {
  name: guid(deadLetterContainer.id, graphPartnerTopic.id, storageBlobDataContributorRoleId)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: graphPartnerTopic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

output customTopicName string = enableCustomEvents ? customTopic.name : ''
output customTopicEndpoint string = enableCustomEvents ? customTopic.properties.endpoint : ''
output graphPartnerTopicName string = subscribeGraphTopic ? graphPartnerTopic.name : ''
output deadLetterContainerName string = deadLetterContainer.name
