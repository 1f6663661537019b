// Azure Communication Services resource. Access keys are disabled (disableLocalAuth), so the
// identity/token APIs only accept Microsoft Entra ID callers holding an RBAC role on it.
param name string
param tags object = {}
@description('Where ACS stores data at rest. Cannot be changed after creation.')
param dataLocation string = 'United States'

resource communicationService 'Microsoft.Communication/communicationServices@2025-05-01' = {
  name: name
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
    disableLocalAuth: true
  }
}

output name string = communicationService.name
output resourceId string = communicationService.id
output hostName string = communicationService.properties.hostName
output endpoint string = 'https://${communicationService.properties.hostName}/'
