"""POST /api/token/teams with the ACS client authenticated by managed identity (Bearer).

Two different Bearer tokens meet at the emulator: the service's own managed-identity
token in ``Authorization`` (audience ``https://communication.azure.com``) and the Teams
user's Entra token in the body (audience ``https://auth.msft.communication.azure.com``).
"""

from __future__ import annotations

import jwt
import pytest

from tests.calls import call, request

from .conftest import CLIENT_ID, Wire

pytestmark = pytest.mark.usefixtures("mi_app_env")

# Entra ids are GUIDs; ACS answers 400 "Provided AppId has invalid format." to others
# (Azure/azure-sdk-for-python sdk/communication/azure-communication-identity/tests/recordings/
# test_communication_identity_client.pyTestClienttest_get_token_for_teams_user_with_invalid_
# client_id[invalid_client_id-invalid].json), and so does the emulator.
APP_ID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
TEAMS_USER = "6d5c4b3a-2f1e-4d0c-9b8a-7f6e5d4c3b2a"
OTHER_APP = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"


async def exchange(issuer, caller: str, body: dict) -> tuple[int, dict, dict]:
    return await call("exchange_teams_token", request(
        "POST", "token/teams", token=issuer.mint(caller), body=body))


async def test_teams_exchange_over_managed_identity(issuer, acs, wire: Wire):
    before = issuer.stats()["msiRequests"]
    entra = issuer.mint_teams(oid=TEAMS_USER, appid=APP_ID)
    status, body, headers = await exchange(
        issuer, TEAMS_USER, {"token": entra, "appId": APP_ID, "userId": TEAMS_USER})
    assert status == 200, body
    assert set(body) == {"token", "expiresOn"} and headers["Pragma"] == "no-cache"
    assert acs.validate(body["token"]) == {
        "valid": True, "reason": "ok", "identity": f"8:orgid:{TEAMS_USER}"}
    assert issuer.stats()["msiRequests"] - before == 1  # ACS only; no table access
    sent = wire.to(acs.port)
    assert len(sent) == 1 and sent[0].url.split("?")[0].endswith("/teamsUser/:exchangeAccessToken")
    service_token = jwt.decode(sent[0].bearer, options={"verify_signature": False})
    assert service_token["aud"].rstrip("/") == "https://communication.azure.com"
    assert service_token["appid"] == CLIENT_ID
    stats = acs.stats()
    assert stats["requests"]["exchangeTeamsUserAccessToken"] == 1
    assert stats["unauthenticated"] == 0 and stats["identities"] == 0


async def test_teams_exchange_rejections_over_managed_identity(issuer, acs):
    entra = issuer.mint_teams(oid=TEAMS_USER, appid=APP_ID)
    # Someone else's Teams token: refused before ACS is called.
    status, body, _ = await exchange(
        issuer, "mallory", {"token": entra, "appId": APP_ID, "userId": TEAMS_USER})
    assert status == 403 and body["error"]["code"] == "forbidden"
    assert acs.stats()["requests"]["exchangeTeamsUserAccessToken"] == 0
    # ACS rejects the Teams token (wrong app id): a 400 for the caller, not a 503, even
    # though the service's own Bearer token was fine.
    status, body, _ = await exchange(
        issuer, TEAMS_USER, {"token": entra, "appId": OTHER_APP, "userId": TEAMS_USER})
    assert status == 400 and body["error"]["code"] == "acs_rejected"
    # An expired Teams token: rejected the same way.
    stale = issuer.mint_teams(oid=TEAMS_USER, appid=APP_ID, minutes=-5)
    status, body, _ = await exchange(
        issuer, TEAMS_USER, {"token": stale, "appId": APP_ID, "userId": TEAMS_USER})
    assert status == 400 and body["error"]["code"] == "acs_rejected"
    assert acs.stats()["unauthenticated"] == 0


@pytest.fixture
def foreign_identity(tmp_path, monkeypatch):
    """The managed identity endpoint of another tenant: Azurite (which checks no
    signature) still takes its tokens, ACS does not, like an identity that lacks its
    ACS role assignment or a stale AZURE_CLIENT_ID."""
    from localdev.issuer import IssuerServer

    with IssuerServer(tmp_path / "foreign") as other:
        for name, value in other.mi_env().items():
            monkeypatch.setenv(name, value)
        yield other


async def test_acs_refusing_the_service_identity_is_a_logged_503(
        issuer, acs, foreign_identity, caplog):
    from shared import runtime

    await runtime.reset()
    status, body, headers = await call("issue_token", request(
        "POST", "token", token=issuer.mint("refused")))
    assert status == 503 and body["error"]["code"] == "unavailable", body
    assert headers["Retry-After"] == "30"
    assert acs.stats()["unauthenticated"] >= 1
    assert "ACS rejected the service's request" in caplog.text  # operators see why


async def test_teams_exchange_when_acs_refuses_the_service_identity(
        issuer, acs, foreign_identity, caplog):
    from shared import runtime

    await runtime.reset()
    entra = issuer.mint_teams(oid=TEAMS_USER, appid=APP_ID)  # a perfectly good token
    status, body, _ = await exchange(
        issuer, TEAMS_USER, {"token": entra, "appId": APP_ID, "userId": TEAMS_USER})
    assert acs.stats()["unauthenticated"] >= 1  # ACS refused the service, not the Teams token
    assert status == 503 and body["error"]["code"] == "unavailable", body
    assert "ACS rejected the service's request" in caplog.text
