"""Error messages that tell a caller how to fix the request: the valid or allowed scopes,
the closest known field, and why a user claim is unusable (never its value)."""

from __future__ import annotations

import pytest

from tests.calls import call, request

pytestmark = pytest.mark.usefixtures("app_env")  # ALLOWED_SCOPES=chat,voip,chat.join


async def issue(issuer, body: dict, sub: str = "helpful") -> tuple[int, dict]:
    status, reply, _ = await call("issue_token", request("POST", "token",
                                                         token=issuer.mint(sub), body=body))
    return status, reply


async def test_unknown_scope_lists_the_valid_ones(issuer, acs):
    status, body = await issue(issuer, {"scopes": ["chat", "root"]})
    assert status == 400 and body["error"]["target"] == "scopes"
    assert body["error"]["message"] == ("unknown scope 'root'; valid scopes: chat, "
                                        "chat.join, chat.join.limited, voip, voip.join")


async def test_scope_not_allowed_lists_the_allowed_ones(issuer, acs):
    status, body = await issue(issuer, {"scopes": ["voip.join"]})
    assert status == 403
    assert body["error"]["message"] == ("scope 'voip.join' is not allowed for this service; "
                                        "allowed scopes: chat, chat.join, voip")


@pytest.mark.parametrize(("field", "hint"), [
    ("expiresIn", "did you mean 'expiresInMinutes'?"),
    ("scope", "did you mean 'scopes'?"),
    ("admin", "known fields: expiresInMinutes, scopes"),
])
async def test_unknown_field_suggests_the_closest(issuer, acs, field, hint):
    status, body = await issue(issuer, {field: 60})
    assert status == 400 and body["error"]["target"] == field
    assert body["error"]["message"] == f"unknown field '{field}'; {hint}"
    assert acs.stats()["requests"]["createIdentity"] == 0


@pytest.mark.parametrize(("sub", "reason"), [
    ("x" * 300, "it must be at most 256 bytes"),
    ("line\nbreak", "it must not contain control characters"),
])
async def test_unusable_user_claim_says_why(issuer, acs, sub, reason):
    status, body, headers = await call("get_me", request("GET", "me", token=issuer.mint(sub)))
    assert status == 401 and headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert body["error"]["message"] == f"the token's user claim is not usable: {reason}"
    assert sub not in str(body)
