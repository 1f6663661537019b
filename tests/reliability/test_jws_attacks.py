"""Attacks on shared.jws and shared.auth's use of it that the differential test against
PyJWT cannot catch, because PyJWT (or the PyJWT-era shared/auth.py) shared the weakness.
In-process through the worker's entry points, against the session's Azurite, ACS emulator
and local issuer (localdev.issuer): every token below is signed by the issuer's real keys
unless it says otherwise."""

from __future__ import annotations

import pytest

from shared import runtime
from tests.calls import call, request

pytestmark = pytest.mark.usefixtures("app_env")


async def issue(token: str):
    return await call("issue_token", request("POST", "token", token=token))


async def test_a_valid_token_right_after_a_failed_key_fetch_is_a_503_not_a_401(
        issuer, monkeypatch):
    """The identity provider is down at the worker's first request: every caller must get
    503 + Retry-After (retry later), not 401 "signing key is unknown", which tells a client
    its token is bad and sends its user back to sign-in. The first request fetched and
    failed; the next ones fall inside JWKS_MIN_REFRESH_SECONDS, where an unknown kid used
    to be answered 401 at once although no key was ever known."""
    from localdev.azurite import free_port

    monkeypatch.setenv("AUTH_JWKS_URI", f"http://127.0.0.1:{free_port()}/keys")
    await runtime.reset()
    token = issuer.mint("alice")
    for attempt in range(3):
        status, body, headers = await issue(token)
        assert status == 503, (attempt, body)
        assert body["error"]["code"] == "unavailable"
        assert int(headers["Retry-After"]) >= 1
