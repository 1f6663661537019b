"""The official Python SDK (sync, requests transport) against the emulator."""

from __future__ import annotations

import datetime as dt

import pytest
from azure.communication.identity import (
    CommunicationIdentityClient,
    CommunicationTokenScope,
    CommunicationUserIdentifier,
)
from azure.communication.identity._shared.user_credential import CommunicationTokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)

from localdev.acs_emulator import EmulatorProcess

from .helpers import API, decode_segment, signed


def client(emu: EmulatorProcess, **kw: object) -> CommunicationIdentityClient:
    return CommunicationIdentityClient.from_connection_string(
        emu.connection_string, connection_verify=emu.ca_file, **kw
    )


def _expires(s: object) -> dt.datetime:
    assert isinstance(s, str)  # 1.5.0 hands back the raw service string
    return dt.datetime.fromisoformat(s)


def test_full_lifecycle(emu: EmulatorProcess) -> None:
    c = client(emu)
    user = c.create_user()
    assert user.properties["id"].startswith(f"8:acs:{emu.resource_id}_")
    assert emu.identities() == [user.properties["id"]]

    tok = c.get_token(user, [CommunicationTokenScope.CHAT, CommunicationTokenScope.VOIP])
    assert emu.validate(tok.token) == {
        "valid": True,
        "reason": "ok",
        "identity": user.properties["id"],
    }
    left = _expires(tok.expires_on) - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(hours=23, minutes=59) < left <= dt.timedelta(hours=24)

    c.revoke_tokens(user)
    assert emu.validate(tok.token)["reason"] == "revoked"
    after = c.get_token(user, ["voip"])
    assert emu.validate(after.token)["valid"] is True

    c.delete_user(user)
    assert emu.identities() == []
    assert emu.validate(after.token) == {
        "valid": False,
        "reason": "deleted",
        "identity": user.properties["id"],
    }
    for call in (
        lambda: c.get_token(user, ["chat"]),
        lambda: c.revoke_tokens(user),
        lambda: c.delete_user(user),
    ):
        with pytest.raises(ResourceNotFoundError) as ei:
            call()
        assert ei.value.status_code == 404
        assert ei.value.error.code == "IdentityNotFound"


def test_create_user_and_token_with_custom_expiry(emu: EmulatorProcess) -> None:
    c = client(emu)
    user, tok = c.create_user_and_token(
        ["chat", "voip"], token_expires_in=dt.timedelta(minutes=120)
    )
    left = _expires(tok.expires_on) - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(minutes=119) < left <= dt.timedelta(minutes=120)
    claims = decode_segment(tok.token.split(".")[1])
    assert claims["skypeid"] == user.properties["id"][2:]
    assert claims["acsScope"] == "chat,voip"
    assert claims["resourceId"] == emu.resource_id
    assert claims["scp"] == 1792
    assert claims["csi"] == str(claims["iat"])
    assert claims["exp"] - claims["iat"] in (7199, 7200)


@pytest.mark.parametrize("minutes", [60, 1440])
def test_expiry_bounds_accepted(emu: EmulatorProcess, minutes: int) -> None:
    c = client(emu)
    user = c.create_user()
    tok = c.get_token(user, ["chat"], token_expires_in=dt.timedelta(minutes=minutes))
    claims = decode_segment(tok.token.split(".")[1])
    assert claims["exp"] - claims["iat"] in (minutes * 60 - 1, minutes * 60)


@pytest.mark.parametrize("minutes", [59, 1441])
def test_expiry_out_of_range_rejected(emu: EmulatorProcess, minutes: int) -> None:
    c = client(emu, retry_total=0)
    user = c.create_user()
    with pytest.raises(HttpResponseError) as ei:
        c.get_token(user, ["chat"], token_expires_in=dt.timedelta(minutes=minutes))
    assert ei.value.status_code == 400
    assert ei.value.error.code == "ValidationError"
    assert ei.value.error.target == "ExpiresInMinutes"
    assert ei.value.error.message == (
        f"ExpiresInMinutes value {minutes} is invalid. "
        "Value must be within the [60, 1440] interval."
    )
    with pytest.raises(HttpResponseError) as ei2:
        c.create_user_and_token(["chat"], token_expires_in=dt.timedelta(minutes=minutes))
    assert ei2.value.status_code == 400
    # Rejected requests create nothing.
    assert emu.identities() == [user.properties["id"]]


def test_null_expiry_means_1440(emu: EmulatorProcess) -> None:
    r = signed(
        emu,
        "POST",
        f"/identities?api-version={API}",
        {"createTokenWithScopes": ["chat"], "expiresInMinutes": None},
    )
    assert r.status_code == 201, r.text
    claims = decode_segment(r.json()["accessToken"]["token"].split(".")[1])
    assert claims["exp"] - claims["iat"] in (86399, 86400)


def test_unknown_scope_rejected(emu: EmulatorProcess) -> None:
    c = client(emu, retry_total=0)
    user = c.create_user()
    with pytest.raises(HttpResponseError) as ei:
        c.get_token(user, ["chat", "pstn"])
    assert ei.value.status_code == 400
    assert ei.value.error.code == "ValidationError"
    assert "pstn" in ei.value.error.message
    with pytest.raises(HttpResponseError) as ei2:
        c.create_user_and_token(["admin"])
    assert ei2.value.status_code == 400
    assert emu.identities() == [user.properties["id"]]


def test_all_five_scopes_accepted(emu: EmulatorProcess) -> None:
    c = client(emu)
    user = c.create_user()
    scopes = ["chat", "voip", "chat.join", "chat.join.limited", "voip.join"]
    tok = c.get_token(user, scopes)
    assert decode_segment(tok.token.split(".")[1])["acsScope"] == ",".join(scopes)


def test_unknown_identity(emu: EmulatorProcess) -> None:
    c = client(emu, retry_total=0)
    ghost = CommunicationUserIdentifier(
        f"8:acs:{emu.resource_id}_00000000-0000-0000-0000-000000000000"
    )
    with pytest.raises(ResourceNotFoundError):
        c.get_token(ghost, ["chat"])
    with pytest.raises(ResourceNotFoundError):
        c.revoke_tokens(ghost)
    with pytest.raises(ResourceNotFoundError):
        c.delete_user(ghost)


def test_token_usable_by_communication_token_credential(emu: EmulatorProcess) -> None:
    c = client(emu)
    for _ in range(20):  # many different payloads: every one must decode with standard base64
        _, tok = c.create_user_and_token(["chat", "voip.join"])
        assert "-" not in tok.token.split(".")[1]
        assert "_" not in tok.token.split(".")[1]
        cred = CommunicationTokenCredential(tok.token)
        got = cred.get_token()
        assert got.token == tok.token
        assert got.expires_on == decode_segment(tok.token.split(".")[1])["exp"]


def test_wrong_access_key_is_client_authentication_error(emu: EmulatorProcess) -> None:
    bad = emu.connection_string.split("accesskey=")[0] + "accesskey=" + "QUFBQQ=="
    c = CommunicationIdentityClient.from_connection_string(bad, connection_verify=emu.ca_file)
    with pytest.raises(ClientAuthenticationError) as ei:
        c.create_user()
    assert ei.value.status_code == 401
    assert emu.stats()["requests"]["createIdentity"] == 0
    assert emu.identities() == []


def test_ca_trust_through_requests_ca_bundle(
    emu: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_file)
    c = CommunicationIdentityClient.from_connection_string(emu.connection_string)
    user = c.create_user()
    assert emu.identities() == [user.properties["id"]]


@pytest.mark.parametrize("api_version", ["2021-03-07", "2022-06-01", "2022-10-01", "2023-10-01"])
def test_older_stable_api_versions(emu: EmulatorProcess, api_version: str) -> None:
    c = client(emu, api_version=api_version)
    user, tok = c.create_user_and_token(["chat"])
    assert emu.validate(tok.token)["valid"] is True
    c.delete_user(user)
