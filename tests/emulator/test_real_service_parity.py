"""Behaviours corrected to match the real ACS Identity service, each with its source.

"PYREC x" = Azure/azure-sdk-for-python sdk/communication/azure-communication-identity/tests/
recordings/test_communication_identity_client.pyTestClienttest_x.json;
"NETREC x" = Azure/azure-sdk-for-net sdk/communication/Azure.Communication.Identity/tests/
SessionRecords/CommunicationIdentityClientLiveTests/x.json;
"SPEC v" = Azure/azure-rest-api-specs specification/communication/data-plane/Identity/*/v/.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator

import pytest
from azure.communication.identity import CommunicationIdentityClient
from azure.communication.identity._shared.user_credential import CommunicationTokenCredential
from azure.communication.identity.aio import (
    CommunicationIdentityClient as AsyncCommunicationIdentityClient,
)

from localdev.acs_emulator import EmulatorProcess
from localdev.acs_emulator.tokens import TICKS_PER_SECOND, iso_expires_on
from localdev.acs_emulator.versions import IDENTITY_VERSIONS, TEAMS_VERSIONS
from shared.acs import SdkAcsGateway, parse_expires_on
from shared.models import Scope
from tests.revoke_clock import aleave_revoke_second

from .helpers import create_identity, decode_segment, quote_id, signed

IDENTITY_OPS_RECORDED = (
    # NETREC CreateIdentityWithServiceVersion_V2021_03_07 (recorded 2023-03)
    "2020-07-20-preview2, 2021-02-22-preview1, 2021-03-07, 2021-10-31-preview, 2021-11-01, "
    "2022-06-01, 2022-10-01, 2023-08-01"
)
TEAMS_RECORDED = "2021-10-31-preview, 2022-06-01, 2022-10-01, 2023-08-01"  # PYREC ..._wrong_user_object_id


def issue(emu: EmulatorProcess, ident: str, body: object, version: str = "2023-10-01"):  # type: ignore[no-untyped-def]
    return signed(
        emu, "POST", f"/identities/{quote_id(ident)}/:issueAccessToken?api-version={version}", body
    )


# ---------------------------------------------------------------------------- api-versions
def test_every_advertised_version_is_accepted_by_every_identity_operation(
    emu: EmulatorProcess,
) -> None:
    assert ", ".join(IDENTITY_VERSIONS).startswith(IDENTITY_OPS_RECORDED + ", 2023-10-01")
    for v in IDENTITY_VERSIONS:
        r = signed(emu, "POST", f"/identities?api-version={v}", {"createTokenWithScopes": ["chat"]})
        assert r.status_code == 201, (v, r.text)
        assert r.headers["api-supported-versions"] == ", ".join(IDENTITY_VERSIONS)
        ident = r.json()["identity"]["id"]
        assert issue(emu, ident, {"scopes": ["voip"]}, v).status_code == 200, v
        revoke = f"/identities/{quote_id(ident)}/:revokeAccessTokens?api-version={v}"
        assert signed(emu, "POST", revoke).status_code == 204, v
        delete = f"/identities/{quote_id(ident)}?api-version={v}"
        assert signed(emu, "DELETE", delete).status_code == 204, v


@pytest.mark.parametrize("version", ["2022-09-01", "2021-03-31-preview1", "2024-01-01"])
def test_versions_never_advertised_are_refused(emu: EmulatorProcess, version: str) -> None:
    """SPEC stable/2022-09-01 exists but no recorded header lists it; 2021-03-31-preview1 was
    advertised in 2021 (Azure/azure-sdk-for-js sdk/communication/communication-chat/recordings/
    node/chatthreadclient/recording_successfully_adds_participants.js) and no longer is."""
    r = signed(emu, "POST", f"/identities?api-version={version}")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "UnsupportedApiVersion"
    assert emu.identities() == []


def test_teams_operation_has_its_own_version_list(emu: EmulatorProcess) -> None:
    """PYREC get_token_for_teams_user_with_wrong_user_object_id: no 2021-03-07, no 2021-11-01."""
    assert ", ".join(TEAMS_VERSIONS).startswith(TEAMS_RECORDED + ", 2023-10-01")
    body = {"token": "aad.jwt.token", "appId": "x", "userId": "y"}
    for v in ("2021-03-07", "2021-11-01", "2020-07-20-preview2"):
        r = signed(emu, "POST", f"/teamsUser/:exchangeAccessToken?api-version={v}", body)
        assert r.status_code == 400, v
        assert r.json()["error"]["code"] == "UnsupportedApiVersion"
        assert r.headers["api-supported-versions"] == ", ".join(TEAMS_VERSIONS)
    for v in TEAMS_VERSIONS:  # past the version check: the token is looked at (401)
        r = signed(emu, "POST", f"/teamsUser/:exchangeAccessToken?api-version={v}", body)
        assert r.status_code == 401, v


@pytest.mark.parametrize("version", ["2022-10-01", "2023-08-01", "2023-10-01", "2026-09-23"])
@pytest.mark.parametrize("minutes", [59, 1441])
def test_expires_in_minutes_validated_from_2022_10_01(
    emu: EmulatorProcess, version: str, minutes: int
) -> None:
    """PYREC get_token_with_invalid_custom_expirations[max_invalid_mins-1441] (2022-10-01)."""
    ident = create_identity(emu)
    r = issue(emu, ident, {"scopes": ["chat"], "expiresInMinutes": minutes}, version)
    assert r.status_code == 400
    assert r.json() == {
        "error": {
            "code": "ValidationError",
            "message": f"ExpiresInMinutes value {minutes} is invalid. Value must be within the "
            "[60, 1440] interval.",
            "target": "ExpiresInMinutes",
        }
    }
    assert r.headers["Content-Type"] == "application/json"
    assert "api-supported-versions" in r.headers
    r = signed(
        emu, "POST", f"/identities?api-version={version}",
        {"createTokenWithScopes": ["chat"], "expiresInMinutes": minutes},
    )
    assert r.status_code == 400
    assert r.json()["error"]["target"] == "ExpiresInMinutes"


@pytest.mark.parametrize("version", ["2021-03-07", "2021-11-01", "2022-06-01"])
def test_versions_without_expires_in_minutes_ignore_it(emu: EmulatorProcess, version: str) -> None:
    """SPEC stable/2021-03-07 and 2022-06-01 have no expiresInMinutes: 24 h whatever is sent."""
    ident = create_identity(emu)
    r = issue(emu, ident, {"scopes": ["chat"], "expiresInMinutes": 59}, version)
    assert r.status_code == 200, r.text
    left = parse_expires_on(r.json()["expiresOn"]) - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(hours=23, minutes=59) < left <= dt.timedelta(hours=24)


def test_join_scopes_exist_from_2023_10_01(emu: EmulatorProcess) -> None:
    """SPEC stable/2023-08-01 lists only chat and voip; 2023-10-01 adds the join scopes."""
    ident = create_identity(emu)
    for scope in ("chat.join", "chat.join.limited", "voip.join"):
        old = issue(emu, ident, {"scopes": [scope]}, "2023-08-01")
        assert old.status_code == 400, scope
        assert old.json()["error"]["target"] == "Scopes"
        assert issue(emu, ident, {"scopes": [scope]}, "2023-10-01").status_code == 200


def test_custom_id_is_refused_rather_than_ignored(emu: EmulatorProcess) -> None:
    """SPEC stable/2025-06-30 adds customId (idempotent create): not emulated, so it is a 400
    instead of a silently different identity."""
    r = signed(emu, "POST", "/identities?api-version=2025-06-30", {"customId": "alice"})
    assert r.status_code == 400
    assert r.json()["error"]["target"] == "customId"
    assert emu.identities() == []


def test_sdk_api_version_keyword_for_each_stable_version(emu: EmulatorProcess) -> None:
    """The Python SDK's api_version keyword: every version it can send still works unmodified."""
    for v in ("2021-03-07", "2022-06-01", "2022-10-01", "2023-08-01", "2023-10-01"):
        c = CommunicationIdentityClient.from_connection_string(
            emu.connection_string, connection_verify=emu.ca_file, api_version=v
        )
        user, tok = c.create_user_and_token(["chat"])
        assert emu.validate(tok.token)["valid"] is True
        c.revoke_tokens(user)
        c.delete_user(user)


# ---------------------------------------------------------------------------- details
def test_scopes_null_is_the_recorded_model_validation_error(emu: EmulatorProcess) -> None:
    """PYREC get_token_with_no_scopes: {"scopes": null} -> exactly this body; the response has
    Content-Type application/json (no charset) and no api-supported-versions."""
    ident = create_identity(emu)
    for body in ({"scopes": None, "expiresInMinutes": None}, {}):
        r = issue(emu, ident, body, "2022-10-01")
        assert r.status_code == 400
        assert r.json() == {
            "error": {
                "code": "ValidationError",
                "message": "Scopes: The Scopes field is required.",
                "target": "Scopes",
            }
        }
        assert r.headers["Content-Type"] == "application/json"
        assert "api-supported-versions" not in r.headers


def test_create_with_null_scopes_is_identity_only(emu: EmulatorProcess) -> None:
    """PYREC create_user_and_token_with_no_scopes: 201 with the identity and no token."""
    r = signed(
        emu, "POST", "/identities?api-version=2022-10-01",
        {"createTokenWithScopes": None, "expiresInMinutes": None},
    )
    assert r.status_code == 201
    assert list(r.json()) == ["identity"]


def test_error_and_success_content_types(emu: EmulatorProcess) -> None:
    """Success: application/json; charset=utf-8 (PYREC get_token); errors: application/json."""
    ok = signed(emu, "POST", "/identities?api-version=2023-10-01")
    assert ok.headers["Content-Type"] == "application/json; charset=utf-8"
    ghost = f"8:acs:{emu.resource_id}_00000000-0000-0000-0000-000000000000"
    for r in (
        issue(emu, ghost, {"scopes": ["chat"]}),
        issue(emu, ok.json()["identity"]["id"], {"scopes": ["nope"]}),
        signed(emu, "POST", "/identities?api-version=1999-01-01"),
    ):
        assert r.status_code >= 400
        assert r.headers["Content-Type"] == "application/json"


# ---------------------------------------------------------------------------- expiresOn
@pytest.mark.parametrize(
    ("ticks", "digits", "text"),
    [
        # NETREC CreateUserAndTokenWithChatScope: 7 digits
        (16733733607844833, None, "2023-01-10T17:56:00.7844833+00:00"),
        # PYREC get_token: 6 digits (the 7th was a zero, .NET drops it)
        (16685920756884020, None, "2022-11-16T09:47:55.688402+00:00"),
        (16685920750000000, None, "2022-11-16T09:47:55+00:00"),
        (16685920756884020, 7, "2022-11-16T09:47:55.6884020+00:00"),
        (16685920756884020, 3, "2022-11-16T09:47:55.688+00:00"),
        (16685920756884020, 0, "2022-11-16T09:47:55+00:00"),
    ],
)
def test_expires_on_written_like_dotnet(ticks: int, digits: int | None, text: str) -> None:
    assert iso_expires_on(ticks, digits) == text


FRACTION = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.(\d{1,7}))?\+00:00$")


@pytest.fixture
def digits_emu(emu: EmulatorProcess) -> Iterator[EmulatorProcess]:
    yield emu
    emu.configure(expires_on_digits=None)


@pytest.mark.parametrize("digits", [7, 6, 3, 1, 0])
async def test_service_and_sdks_parse_every_expires_on_shape(
    digits_emu: EmulatorProcess, digits: int
) -> None:
    """The service's own parsing (shared/acs.py over the aio SDK) and the sync SDK's
    CommunicationTokenCredential, for 7 digits as the service writes and fewer as recorded."""
    emu = digits_emu
    assert emu.configure(expires_on_digits=digits)["expiresOnDigits"] == digits
    sync = CommunicationIdentityClient.from_connection_string(
        emu.connection_string, connection_verify=emu.ca_file
    )
    user, raw = sync.create_user_and_token(["chat"])
    m = FRACTION.match(raw.expires_on)
    assert m is not None, raw.expires_on
    assert len(m.group(2) or "") == digits
    exp_claim = decode_segment(raw.token.split(".")[1])["exp"]
    assert int(parse_expires_on(raw.expires_on).timestamp()) == exp_claim
    assert CommunicationTokenCredential(raw.token).get_token().expires_on == exp_claim

    gateway = SdkAcsGateway(
        AsyncCommunicationIdentityClient.from_connection_string(
            emu.connection_string, connection_verify=emu.ca_file, retry_total=0
        )
    )
    try:
        ident, tok = await gateway.create_user_and_token([Scope.CHAT], 90)
        again = await gateway.get_token(ident, [Scope.VOIP], 60)
    finally:
        await gateway.close()
    now = dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(minutes=89) < tok.expires_on - now <= dt.timedelta(minutes=90)
    assert dt.timedelta(minutes=59) < again.expires_on - now <= dt.timedelta(minutes=60)
    for t in (tok, again):
        assert t.expires_on.tzinfo is not None
        assert t.expires_on.microsecond % 10 ** (6 - min(digits, 6)) == 0


def test_default_expires_on_has_at_most_7_digits(emu: EmulatorProcess) -> None:
    ident = create_identity(emu)
    shapes = set()
    for _ in range(30):
        text = issue(emu, ident, {"scopes": ["chat"]}).json()["expiresOn"]
        m = FRACTION.match(text)
        assert m is not None, text
        shapes.add(len(m.group(2) or ""))
    assert max(shapes) <= 7
    assert TICKS_PER_SECOND == 10**7


# ---------------------------------------------------------------------------- revoke delay
def _wait_for(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_revoke_delay_keeps_old_tokens_working_until_it_elapses(emu: EmulatorProcess) -> None:
    """Revocation "can take up to 15 minutes" on Azure (see docs/emulator.md): with a delay the
    revoke answers 204 at once, older tokens stay valid until the delay has passed, tokens
    issued after the revoke are never affected."""
    emu.configure(revoke_delay=600)
    ident = create_identity(emu)
    before = issue(emu, ident, {"scopes": ["chat"]}).json()["token"]
    r = signed(emu, "POST", f"/identities/{quote_id(ident)}/:revokeAccessTokens?api-version=2023-10-01")
    assert r.status_code == 204
    assert emu.validate(before)["valid"] is True  # 600 s have not passed
    emu.configure(revoke_delay=0.5)  # a second, short one makes the test finish
    after_first = issue(emu, ident, {"scopes": ["chat"]}).json()["token"]
    signed(emu, "POST", f"/identities/{quote_id(ident)}/:revokeAccessTokens?api-version=2023-10-01")
    after = issue(emu, ident, {"scopes": ["chat"]}).json()["token"]
    _wait_for(lambda: emu.validate(after_first)["reason"] == "revoked")
    assert emu.validate(before)["reason"] == "revoked"
    assert emu.validate(after) == {"valid": True, "reason": "ok", "identity": ident}


def test_revoke_delay_from_the_command_line(
    emulator_factory,  # type: ignore[no-untyped-def]
) -> None:
    emu = emulator_factory(revoke_delay=900)
    assert emu.control("GET", "config") == {"revokeDelaySeconds": 900.0, "expiresOnDigits": None}
    assert emu.stats()["config"]["revokeDelaySeconds"] == 900.0
    emu.configure(revoke_delay=1)
    emu.reset()  # back to the command line's value
    assert emu.control("GET", "config")["revokeDelaySeconds"] == 900.0


def test_config_errors(emu: EmulatorProcess) -> None:
    from localdev.acs_emulator import EmulatorError

    for body in ({"revokeDelaySeconds": -1}, {"expiresOnDigits": 8}, {"nope": 1}):
        with pytest.raises(EmulatorError, match="400"):
            emu.control("POST", "config", body)


async def test_service_revoke_under_delay(emu: EmulatorProcess) -> None:
    """What the service can promise on Azure: revoke returns once ACS accepted it; tokens issued
    before stop working when ACS applies it (up to 15 min), tokens issued after keep working."""
    emu.configure(revoke_delay=0.5)
    gateway = SdkAcsGateway(
        AsyncCommunicationIdentityClient.from_connection_string(
            emu.connection_string, connection_verify=emu.ca_file, retry_total=0
        )
    )
    try:
        ident, old = await gateway.create_user_and_token([Scope.CHAT], 60)
        await gateway.revoke_tokens(ident)
        await aleave_revoke_second()  # a same-second token's fate on Azure is unknown
        new = await gateway.get_token(ident, [Scope.CHAT], 60)
    finally:
        await gateway.close()
    _wait_for(lambda: emu.validate(old.token)["reason"] == "revoked")
    assert emu.validate(new.token)["valid"] is True
