"""The official ACS credential (CommunicationTokenCredential) refreshing through POST /api/token.

``CommunicationTokenCredential`` is public only in ``azure.communication.chat`` (the identity
package keeps its copy in a private ``_shared`` module). It calls ``token_refresher`` when its
token expires (or within 10 minutes of expiry when refreshing proactively); starting it from an
already expired token makes the very first ``get_token`` go through the service.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from .helpers import StackClient

chat = pytest.importorskip(
    "azure.communication.chat", reason="pip install azure-communication-chat")


def expired_jwt(seconds_ago: int = 60) -> str:
    """A syntactically valid, already expired JWT: the credential only reads ``exp``."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part({'exp': int(time.time()) - seconds_ago})}.sig"


class Refresher:
    """A token_refresher: POST /api/token with the caller's bearer token, counting calls."""

    def __init__(self, client: StackClient, bearer: str, **body: Any) -> None:
        self.client = client
        self.bearer = bearer
        self.body = body
        self.calls = 0
        self.replies: list[dict[str, Any]] = []

    def __call__(self) -> AccessToken:
        self.calls += 1
        resp = self.client.call("POST", "/token", self.bearer, self.body or None)
        if resp.status != 200:
            raise RuntimeError(f"POST /api/token -> {resp.status}: {resp.body!r}")
        reply: dict[str, Any] = resp.json()
        self.replies.append(reply)
        expires = datetime.fromisoformat(reply["expiresOn"].replace("Z", "+00:00"))
        return AccessToken(reply["token"], int(expires.timestamp()))


def test_credential_refreshes_through_the_service(client: StackClient) -> None:
    _, bearer = client.new_user()
    refresher = Refresher(client, bearer, expiresInMinutes=60)
    credential = chat.CommunicationTokenCredential(expired_jwt(), token_refresher=refresher)

    first = credential.get_token()
    assert refresher.calls == 1
    assert first.token == refresher.replies[0]["token"]
    assert first.expires_on > time.time() + 50 * 60
    check = client.validate(first.token)
    assert check["valid"] is True
    assert check["identity"] == refresher.replies[0]["acsUserId"]

    # A fresh token is cached: no second call to the service.
    assert credential.get_token().token == first.token
    assert refresher.calls == 1

    # Another credential for the same caller (e.g. after an app restart, holding a stale
    # token) refreshes again and lands on the same ACS identity.
    again = chat.CommunicationTokenCredential(expired_jwt(3600), token_refresher=refresher)
    second = again.get_token()
    assert refresher.calls == 2
    assert refresher.replies[1]["acsUserId"] == refresher.replies[0]["acsUserId"]
    assert client.validate(second.token)["valid"] is True


def test_credential_proactive_refresh_starts_from_the_service(client: StackClient) -> None:
    _, bearer = client.new_user()
    refresher = Refresher(client, bearer, scopes=["chat"], expiresInMinutes=60)
    with chat.CommunicationTokenCredential(
        expired_jwt(), token_refresher=refresher, proactive_refresh=True
    ) as credential:
        token = credential.get_token()
        assert refresher.calls >= 1
        assert token.token == refresher.replies[-1]["token"]
        assert refresher.replies[-1]["scopes"] == ["chat"]
        assert client.validate(token.token)["valid"] is True


def test_refresher_sees_service_errors(client: StackClient) -> None:
    """A caller without a valid bearer token gets no ACS token: the refresher fails loudly."""
    refresher = Refresher(client, "not-a-jwt")
    credential = chat.CommunicationTokenCredential(expired_jwt(), token_refresher=refresher)
    with pytest.raises(RuntimeError, match=r"-> 401: .*unauthenticated"):
        credential.get_token()


async def test_async_credential_refreshes(client: StackClient) -> None:
    from azure.communication.chat.aio import CommunicationTokenCredential

    _, bearer = client.new_user()
    sync = Refresher(client, bearer)
    calls = 0

    async def refresher() -> AccessToken:
        nonlocal calls
        calls += 1
        return sync()

    async with CommunicationTokenCredential(expired_jwt(), token_refresher=refresher) as cred:
        token = await cred.get_token()
    assert calls == 1
    assert client.validate(token.token)["valid"] is True
