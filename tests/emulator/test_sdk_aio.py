"""The official Python SDK (aio, aiohttp transport: ids unencoded on the wire)."""

from __future__ import annotations

import datetime as dt

import pytest
from azure.communication.identity import CommunicationUserIdentifier
from azure.communication.identity._shared.user_credential_async import (
    CommunicationTokenCredential as AsyncCommunicationTokenCredential,
)
from azure.communication.identity.aio import CommunicationIdentityClient
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)

from localdev.acs_emulator import EmulatorProcess


def aclient(emu: EmulatorProcess, **kw: object) -> CommunicationIdentityClient:
    return CommunicationIdentityClient.from_connection_string(
        emu.connection_string, connection_verify=emu.ca_file, **kw
    )


async def test_full_lifecycle_aio(emu: EmulatorProcess) -> None:
    async with aclient(emu) as c:
        user = await c.create_user()
        ident = user.properties["id"]
        tok = await c.get_token(user, ["chat"])
        assert emu.validate(tok.token)["valid"] is True

        user2, tok2 = await c.create_user_and_token(
            ["voip"], token_expires_in=dt.timedelta(minutes=60)
        )
        assert emu.validate(tok2.token)["identity"] == user2.properties["id"]

        await c.revoke_tokens(user)
        assert emu.validate(tok.token)["reason"] == "revoked"
        fresh = await c.get_token(user, ["chat"])
        assert emu.validate(fresh.token)["valid"] is True

        await c.delete_user(user)
        assert emu.validate(fresh.token)["reason"] == "deleted"
        assert emu.identities() == [user2.properties["id"]]
        with pytest.raises(ResourceNotFoundError):
            await c.get_token(user, ["chat"])
        with pytest.raises(ResourceNotFoundError):
            await c.revoke_tokens(user)
        with pytest.raises(ResourceNotFoundError):
            await c.delete_user(user)
        assert ident not in emu.identities()


async def test_validation_errors_aio(emu: EmulatorProcess) -> None:
    async with aclient(emu, retry_total=0) as c:
        user = await c.create_user()
        with pytest.raises(HttpResponseError) as ei:
            await c.get_token(user, ["chat"], token_expires_in=dt.timedelta(minutes=59))
        assert ei.value.status_code == 400
        assert ei.value.error.code == "ValidationError"
        with pytest.raises(HttpResponseError) as ei2:
            await c.get_token(user, ["nope"])
        assert ei2.value.status_code == 400
        ghost = CommunicationUserIdentifier(f"8:acs:{emu.resource_id}_unknown")
        with pytest.raises(ResourceNotFoundError):
            await c.get_token(ghost, ["chat"])


async def test_async_token_credential(emu: EmulatorProcess) -> None:
    async with aclient(emu) as c:
        _, tok = await c.create_user_and_token(["chat"])
    async with AsyncCommunicationTokenCredential(tok.token) as cred:
        got = await cred.get_token()
    assert got.token == tok.token


async def test_wrong_key_aio(emu: EmulatorProcess) -> None:
    bad = emu.connection_string.split("accesskey=")[0] + "accesskey=QUFBQQ=="
    async with CommunicationIdentityClient.from_connection_string(
        bad, connection_verify=emu.ca_file
    ) as c:
        with pytest.raises(ClientAuthenticationError):
            await c.create_user()
