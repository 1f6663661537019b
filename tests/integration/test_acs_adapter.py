"""SdkAcsGateway against our ACS emulator: operations, error mapping, bounded retries."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import jwt
import pytest

from shared.acs import SdkAcsGateway, parse_expires_on
from shared.errors import AcsIdentityNotFound, AcsRejected, Throttled, Unavailable
from shared.models import Scope
from tests.revoke_clock import aleave_revoke_second


@pytest.fixture
async def gateway(acs):
    acs.reset()
    gateway = SdkAcsGateway.from_connection_string(acs.connection_string, timeout=2)
    yield gateway
    acs.clear_faults()
    await gateway.close()


async def test_lifecycle_against_emulator(gateway, acs):
    acs_id, first = await gateway.create_user_and_token([Scope.CHAT, Scope.VOIP], 60)
    assert acs_id.startswith("8:acs:") and first.expires_on > datetime.now(timezone.utc)
    assert acs.validate(first.token)["valid"]
    second = await gateway.get_token(acs_id, [Scope.CHAT], 120)
    await gateway.revoke_tokens(acs_id)
    assert not acs.validate(second.token)["valid"]
    await aleave_revoke_second()  # a same-second token's fate on Azure is unknown
    third = await gateway.get_token(acs_id, [Scope.VOIP], 60)
    assert acs.validate(third.token)["valid"]
    # Valid on its own clock second, not by the emulator pushing iat ahead (docs/emulator.md).
    claims = jwt.decode(third.token, options={"verify_signature": False})
    assert claims["iat"] <= time.time()
    await gateway.delete_user(acs_id)
    assert not acs.validate(third.token)["valid"]
    with pytest.raises(AcsIdentityNotFound):
        await gateway.get_token(acs_id, [Scope.CHAT], 60)
    with pytest.raises(AcsIdentityNotFound):
        await gateway.delete_user(acs_id)
    stats = acs.stats()["requests"]
    assert stats["createIdentity"] == 1 and stats["issueAccessToken"] == 3


async def test_throttle_within_budget_is_retried(gateway, acs):
    acs_id, _ = await gateway.create_user_and_token([Scope.CHAT], 60)
    acs.set_faults(fault={"operation": "issueAccessToken", "status": 429, "count": 1,
                          "retryAfterSeconds": 1})
    token = await gateway.get_token(acs_id, [Scope.CHAT], 60)
    assert acs.validate(token.token)["valid"]


async def test_long_retry_after_becomes_throttled_with_retry_after(gateway, acs):
    acs_id, _ = await gateway.create_user_and_token([Scope.CHAT], 60)
    acs.set_faults(fault={"operation": "issueAccessToken", "status": 429, "count": 1,
                          "retryAfterSeconds": 30})
    with pytest.raises(Throttled) as caught:
        await gateway.get_token(acs_id, [Scope.CHAT], 60)
    assert caught.value.retry_after == 30


@pytest.mark.parametrize("fault", [
    {"status": 503, "count": 1}, {"status": 500, "count": 2}, {"mode": "reset", "count": 1},
])
async def test_transient_failures_are_retried(gateway, acs, fault):
    acs_id, _ = await gateway.create_user_and_token([Scope.CHAT], 60)
    acs.set_faults(fault={"operation": "issueAccessToken", **fault})
    token = await gateway.get_token(acs_id, [Scope.CHAT], 60)
    assert acs.validate(token.token)["valid"]


async def test_persistent_failure_and_hang_become_unavailable(gateway, acs):
    acs_id, _ = await gateway.create_user_and_token([Scope.CHAT], 60)
    acs.set_faults(fault={"operation": "revokeAccessTokens", "status": 503, "count": 5})
    with pytest.raises(Unavailable):
        await gateway.revoke_tokens(acs_id)
    acs.clear_faults()
    acs.set_faults(fault={"operation": "revokeAccessTokens", "mode": "hang", "count": 3})
    with pytest.raises(Unavailable):
        await gateway.revoke_tokens(acs_id)


async def test_wrong_key_is_unavailable_not_leaked(acs):
    bad = acs.connection_string.split("accesskey=")[0] + "accesskey=" + "A" * 44
    gateway = SdkAcsGateway.from_connection_string(bad, timeout=2)
    try:
        with pytest.raises(Unavailable) as caught:
            await gateway.create_user_and_token([Scope.CHAT], 60)
        assert "accesskey" not in str(caught.value).lower()
    finally:
        await gateway.close()


# Entra ids are GUIDs: the real service refuses others with 400 "Provided AppId has invalid
# format." (Azure/azure-sdk-for-python sdk/communication/azure-communication-identity/tests/
# recordings/test_communication_identity_client.pyTestClienttest_get_token_for_teams_user_with_
# invalid_client_id[invalid_client_id-invalid].json), and the emulator now does too.
TEAMS_OID = "0b6c2d9e-53a1-4d7c-9a52-3c1f7e0a4b11"
TEAMS_APP = "5f1e9c7a-2b3d-4e8f-a1c6-7d9b0e2f4a35"
OTHER_APP = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


async def test_teams_exchange(gateway, acs, issuer):
    entra = issuer.mint_teams(oid=TEAMS_OID, appid=TEAMS_APP)
    token = await gateway.exchange_teams_token(entra, TEAMS_APP, TEAMS_OID)
    assert acs.validate(token.token)["valid"]
    # Wrong app: a 400 on Azure (...test_get_token_for_teams_user_with_wrong_client_id.json).
    with pytest.raises(AcsRejected):
        await gateway.exchange_teams_token(entra, OTHER_APP, TEAMS_OID)
    # Malformed app id: 400 "Provided AppId has invalid format."; expired token: 401.
    with pytest.raises(AcsRejected):
        await gateway.exchange_teams_token(entra, "app-2", TEAMS_OID)
    stale = issuer.mint_teams(oid=TEAMS_OID, appid=TEAMS_APP, minutes=-5)
    with pytest.raises(AcsRejected):
        await gateway.exchange_teams_token(stale, TEAMS_APP, TEAMS_OID)


@pytest.mark.parametrize(("raw", "micro"), [
    ("2022-11-16T09:47:55.688402+00:00", 688402),
    ("2022-11-16T09:47:55.6884021+00:00", 688402),
    ("2022-11-16T09:47:55.6Z", 600000),
    ("2022-11-16T09:47:55Z", 0),
])
def test_parse_expires_on(raw, micro):
    parsed = parse_expires_on(raw)
    assert parsed.tzinfo is not None and parsed.microsecond == micro and parsed.second == 55
