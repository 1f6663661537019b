"""Managed identity tokens of the local issuer are accepted by Azurite (--oauth basic, HTTPS)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.data.tables import TableServiceClient
from azure.data.tables.aio import TableServiceClient as AsyncTableServiceClient
from azure.identity import ManagedIdentityCredential
from azure.identity.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential

from localdev.issuer import IssuerProcess

from .conftest import Azurite


def _table_name(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:12]


def test_sync_table_client_with_managed_identity(
    mi_env: IssuerProcess, azurite_oauth: Azurite
) -> None:
    credential = ManagedIdentityCredential()
    before = mi_env.stats()["msiRequests"]
    with TableServiceClient(
        endpoint=azurite_oauth.endpoint,
        credential=credential,
        connection_verify=str(azurite_oauth.ca_cert),
    ) as service:
        name = _table_name("mi")
        table = service.create_table(name)
        table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "Value": 42})
        entity = table.get_entity("p", "r")
        assert entity["Value"] == 42
        assert name in [t.name for t in service.list_tables()]
    # the token really came from our MI endpoint
    assert mi_env.stats()["msiRequests"] > before


async def test_aio_table_client_with_managed_identity(
    mi_env: IssuerProcess, azurite_oauth: Azurite
) -> None:
    async with (
        AsyncManagedIdentityCredential() as credential,
        AsyncTableServiceClient(
            endpoint=azurite_oauth.endpoint,
            credential=credential,
            connection_verify=str(azurite_oauth.ca_cert),
        ) as service,
    ):
        name = _table_name("miaio")
        table = await service.create_table(name)
        await table.create_entity({"PartitionKey": "p", "RowKey": "r", "Text": "hello"})
        entity = await table.get_entity("p", "r")
        assert entity["Text"] == "hello"
        await table.close()


class _StaticCredential:
    """A TokenCredential handing out one fixed token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


@pytest.mark.parametrize("kind", ["caller-token", "wrong-audience-entra", "expired"])
def test_azurite_rejects_tokens_it_should(
    issuer: IssuerProcess, azurite_oauth: Azurite, kind: str
) -> None:
    """Proves Azurite really validates: our storage token passes, these do not."""
    keys = issuer.keys
    if kind == "caller-token":  # iss http://127.0.0.1:PORT: not an sts.* issuer
        token = issuer.mint(sub="alice", audience="https://storage.azure.com")
    elif kind == "wrong-audience-entra":
        token = keys.mint_managed_identity("https://communication.azure.com/")["access_token"]
    else:
        token = keys.mint_managed_identity("https://storage.azure.com", minutes=-5)["access_token"]
    with (
        TableServiceClient(
            endpoint=azurite_oauth.endpoint,
            credential=_StaticCredential(token),
            connection_verify=str(azurite_oauth.ca_cert),
        ) as service,
        pytest.raises((ClientAuthenticationError, HttpResponseError)) as excinfo,
    ):
        service.create_table(_table_name("deny"))
    assert getattr(excinfo.value, "status_code", None) == 403
