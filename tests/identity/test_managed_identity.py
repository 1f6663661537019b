"""No connection strings: every function works on managed identity alone, end to end.

The unmodified aio azure-identity ``ManagedIdentityCredential`` (``AZURE_CLIENT_ID`` set)
and ``DefaultAzureCredential`` (unset) fetch tokens from the local App Service MI
endpoint; Azurite (``--oauth basic``, HTTPS) and the ACS emulator (``trusted_jwks_uri``)
accept them. ``wire`` proves that every request carried a Bearer token and none a key.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from tests.calls import FUNCTIONS, call, request

from .conftest import CLIENT_ID, Wire

pytestmark = pytest.mark.usefixtures("mi_app_env")

ACS_AUDIENCE = "https://communication.azure.com"
STORAGE_AUDIENCE = "https://storage.azure.com"


class _Context:
    def __init__(self, name: str) -> None:
        self.invocation_id = f"inv-{name}"
        self.function_name = name
        self.function_directory = "."


class _Timer:
    past_due = False
    schedule_status: dict[str, Any] = {}  # noqa: RUF012


async def run_purge() -> None:
    fn = FUNCTIONS["purge_deleted_users"]
    await fn(timer=_Timer(), context=_Context("purge_deleted_users"))


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def assert_all_bearer(wire: Wire, port: int, audience: str, client_id: str) -> list[dict[str, Any]]:
    """Every request to ``port`` carried a managed-identity Bearer token for ``audience``."""
    sent = wire.to(port)
    assert sent, f"no request reached port {port}"
    schemes = {s.scheme for s in sent}
    assert schemes == {"Bearer"}, schemes  # never SharedKey / HMAC-SHA256
    all_claims = [claims_of(s.bearer) for s in sent]
    for claims in all_claims:
        assert claims["aud"].rstrip("/") == audience
        assert claims["iss"].startswith("https://sts.windows.net/")
        assert claims["appid"] == client_id and claims["idtyp"] == "app"
    return all_claims


async def test_every_function_works_with_a_user_assigned_identity(
        issuer, acs, azurite_mi, wire, mi_app_env):
    from shared import runtime

    before = issuer.stats()["msiRequests"]
    alice = issuer.mint("alice")

    status, first, headers = await call("issue_token", request("POST", "token", token=alice))
    assert status == 200, first
    assert acs.validate(first["token"]) == {
        "valid": True, "reason": "ok", "identity": first["acsUserId"]}
    status, again, _ = await call("issue_token", request("POST", "token", token=alice))
    assert status == 200 and again["acsUserId"] == first["acsUserId"]

    status, me, _ = await call("get_me", request("GET", "me", token=alice))
    assert (status, me["state"], me["acsUserId"]) == (200, "active", first["acsUserId"])

    status, _, _ = await call("revoke_me", request("POST", "me/revoke", token=alice))
    assert status == 204
    assert acs.validate(again["token"])["reason"] == "revoked"

    status, deleted, _ = await call("delete_me", request("DELETE", "me", token=alice))
    assert status == 202 and deleted["state"] == "deleting"

    await run_purge()  # DELETION_GRACE_MINUTES=0: due at once
    assert acs.identities() == []
    status, _, _ = await call("get_me", request("GET", "me", token=alice))
    assert status == 404

    # The managed identity endpoint was used, once per resource (tokens are cached).
    msi = issuer.stats()["msiRequests"] - before
    assert msi == 2, msi
    credential = runtime._worker.credential
    assert type(credential).__name__ == "ManagedIdentityCredential"
    assert type(credential).__module__.startswith("azure.identity.aio")

    # Table Storage and ACS saw Bearer tokens of the user-assigned identity, and nothing else.
    table = assert_all_bearer(wire, azurite_mi.table_port, STORAGE_AUDIENCE, CLIENT_ID)
    comms = assert_all_bearer(wire, acs.port, ACS_AUDIENCE, CLIENT_ID)
    assert len({c["uti"] for c in table}) == 1 and len({c["uti"] for c in comms}) == 1
    stats = acs.stats()
    assert stats["unauthenticated"] == 0
    assert stats["requests"]["createIdentity"] == 1
    assert stats["requests"]["issueAccessToken"] == 1
    assert stats["requests"]["revokeAccessTokens"] == 2  # revoke_me, then delete_me's revoke
    assert stats["requests"]["deleteIdentity"] == 1
    # Nothing in the app's environment could have signed with a key.
    assert not {"COMMUNICATION_SERVICES_CONNECTION_STRING", "IDENTITY_TABLE_CONNECTION",
                "AzureWebJobsStorage"} & set(mi_app_env)


async def test_health_reaches_table_storage_with_the_identity(azurite_mi, wire):
    status, body, _ = await call("health", request("GET", "health"))
    assert (status, body) == (200, {"status": "ok"})
    assert {s.scheme for s in wire.to(azurite_mi.table_port)} == {"Bearer"}


async def test_default_azure_credential_branch(issuer, acs, azurite_mi, wire, monkeypatch):
    """AZURE_CLIENT_ID unset: DefaultAzureCredential, whose chain reaches the (system-
    assigned) managed identity through IDENTITY_ENDPOINT before any developer tool."""
    from shared import runtime

    monkeypatch.delenv("AZURE_CLIENT_ID")
    await runtime.reset()
    before = issuer.stats()["msiRequests"]
    started = time.monotonic()
    status, body, _ = await call("issue_token", request("POST", "token", token=issuer.mint("dac")))
    elapsed = time.monotonic() - started
    assert status == 200, body
    assert elapsed < 5, elapsed
    assert type(runtime._worker.credential).__name__ == "DefaultAzureCredential"
    assert issuer.stats()["msiRequests"] - before == 2
    system_client_id = issuer.keys.managed_identity_ids(None, None, None)[0]
    assert system_client_id != CLIENT_ID
    assert_all_bearer(wire, azurite_mi.table_port, STORAGE_AUDIENCE, system_client_id)
    assert_all_bearer(wire, acs.port, ACS_AUDIENCE, system_client_id)
    assert acs.stats()["unauthenticated"] == 0


async def test_managed_identity_failure_is_a_prompt_503(issuer, acs, monkeypatch, caplog):
    """A wrong IDENTITY_HEADER (or an MI endpoint that refuses): callers get a 503 with
    Retry-After, no identity is created, and no secret reaches the response or the log."""
    from shared import runtime

    monkeypatch.setenv("IDENTITY_HEADER", "not-the-identity-header")
    await runtime.reset()
    started = time.monotonic()
    status, body, headers = await call("issue_token", request(
        "POST", "token", token=issuer.mint("nomi")))
    assert status == 503 and body["error"]["code"] == "unavailable", body
    assert "Retry-After" in headers
    assert time.monotonic() - started < 10
    assert acs.stats()["requests"]["createIdentity"] == 0
    assert issuer.identity_header not in caplog.text
