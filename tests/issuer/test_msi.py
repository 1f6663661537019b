"""The App Service managed identity endpoint, raw and through azure-identity."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
import requests
from azure.identity import ManagedIdentityCredential
from azure.identity.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential

from localdev.issuer import IssuerProcess

API_VERSION = "2019-08-01"


def _verify_entra(token: str, issuer: IssuerProcess, audience: str) -> dict[str, Any]:
    key = jwt.PyJWKClient(issuer.jwks_uri, cache_keys=False).get_signing_key_from_jwt(token)
    assert key.key_id == issuer.keys.kid_rs256
    return jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience=audience,
        issuer=f"https://sts.windows.net/{issuer.tenant_id}/",
    )


def test_missing_header_rejected(issuer: IssuerProcess, http: requests.Session) -> None:
    params = {"api-version": API_VERSION, "resource": "https://storage.azure.com"}
    resp = http.get(issuer.identity_endpoint, params=params, timeout=10)
    assert resp.status_code == 400
    assert "access_token" not in resp.json()


def test_wrong_header_rejected(issuer: IssuerProcess, http: requests.Session) -> None:
    params = {"api-version": API_VERSION, "resource": "https://storage.azure.com"}
    resp = http.get(
        issuer.identity_endpoint,
        params=params,
        headers={"X-IDENTITY-HEADER": issuer.identity_header + "x"},
        timeout=10,
    )
    assert resp.status_code == 401
    assert "access_token" not in resp.json()


@pytest.mark.parametrize(
    "params",
    [
        {"api-version": "2017-09-01", "resource": "https://storage.azure.com"},
        {"api-version": API_VERSION},
        {"api-version": API_VERSION, "resource": "r", "client_id": "a", "principal_id": "b"},
    ],
    ids=["old-api-version", "no-resource", "two-selectors"],
)
def test_bad_requests_rejected(
    issuer: IssuerProcess, http: requests.Session, params: dict[str, str]
) -> None:
    headers = {"X-IDENTITY-HEADER": issuer.identity_header}
    resp = http.get(issuer.identity_endpoint, params=params, headers=headers, timeout=10)
    assert resp.status_code == 400


def test_raw_response_shape(issuer: IssuerProcess, http: requests.Session) -> None:
    before = int(time.time())
    resp = http.get(
        issuer.identity_endpoint,
        params={"api-version": API_VERSION, "resource": "https://storage.azure.com/.default"},
        headers={"X-IDENTITY-HEADER": issuer.identity_header},
        timeout=10,
    )
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert body["token_type"] == "Bearer"
    assert body["resource"] == "https://storage.azure.com"
    assert isinstance(body["expires_on"], str)
    assert body["expires_on"].isdigit()
    assert 3500 <= int(body["expires_on"]) - before <= 3700
    assert body["client_id"] == issuer.keys.mi_client_id
    claims = _verify_entra(body["access_token"], issuer, "https://storage.azure.com")
    assert claims["oid"] == claims["sub"] == issuer.keys.mi_principal_id
    assert claims["appid"] == claims["azp"] == issuer.keys.mi_client_id
    assert claims["tid"] == issuer.tenant_id
    assert claims["exp"] == int(body["expires_on"])


@pytest.mark.parametrize(
    ("scope", "audience"),
    [
        ("https://communication.azure.com//.default", "https://communication.azure.com/"),
        ("https://storage.azure.com/.default", "https://storage.azure.com"),
    ],
)
def test_sync_managed_identity_credential(mi_env: IssuerProcess, scope: str, audience: str) -> None:
    before = mi_env.stats()["msiRequests"]
    credential = ManagedIdentityCredential()
    token = credential.get_token(scope)
    assert token.expires_on > time.time() + 3000
    claims = _verify_entra(token.token, mi_env, audience)
    assert claims["oid"] == mi_env.keys.mi_principal_id
    assert claims["appid"] == mi_env.keys.mi_client_id
    assert mi_env.stats()["msiRequests"] == before + 1


@pytest.mark.parametrize(
    ("scope", "audience"),
    [
        ("https://communication.azure.com//.default", "https://communication.azure.com/"),
        ("https://storage.azure.com/.default", "https://storage.azure.com"),
    ],
)
async def test_aio_managed_identity_credential(
    mi_env: IssuerProcess, scope: str, audience: str
) -> None:
    async with AsyncManagedIdentityCredential() as credential:
        token = await credential.get_token(scope)
    assert token.expires_on > time.time() + 3000
    claims = _verify_entra(token.token, mi_env, audience)
    assert claims["oid"] == mi_env.keys.mi_principal_id


def test_user_assigned_identity_by_client_id(mi_env: IssuerProcess) -> None:
    token = ManagedIdentityCredential(client_id="my-uami-client").get_token(
        "https://storage.azure.com/.default"
    )
    claims = _verify_entra(token.token, mi_env, "https://storage.azure.com")
    assert claims["appid"] == "my-uami-client"
    assert claims["oid"] == mi_env.keys.managed_identity_ids(client_id="my-uami-client")[1]
    assert claims["oid"] != mi_env.keys.mi_principal_id


async def test_aio_user_assigned_identity_by_resource_id(mi_env: IssuerProcess) -> None:
    res_id = (
        "/subscriptions/0000/resourceGroups/rg/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/uami"
    )
    async with AsyncManagedIdentityCredential(identity_config={"mi_res_id": res_id}) as cred:
        token = await cred.get_token("https://communication.azure.com//.default")
    claims = _verify_entra(token.token, mi_env, "https://communication.azure.com/")
    assert claims["xms_mirid"] == res_id
    assert claims["oid"] == mi_env.keys.managed_identity_ids(mi_res_id=res_id)[1]


def test_credential_with_wrong_header_fails(
    mi_env: IssuerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    monkeypatch.setenv("IDENTITY_HEADER", "wrong")
    with pytest.raises(ClientAuthenticationError):
        ManagedIdentityCredential().get_token("https://storage.azure.com/.default")
