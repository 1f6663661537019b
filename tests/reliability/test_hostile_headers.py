"""Hostile credentials never reach a 5xx: the Authorization and X-MS-CLIENT-PRINCIPAL
headers and the claims inside a signed token, as examples (issue 12 item 5) and as
hypothesis properties. In-process through the worker's entry points, against the session's
Azurite, ACS emulator and issuer (every token below is signed by the issuer's real keys)."""

from __future__ import annotations

import base64
import json
import string

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import runtime
from tests.calls import call, request

pytestmark = pytest.mark.usefixtures("app_env")

ADMIN = "TokenService.Admin"
PROPERTY = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

#: Any JSON value: what a hostile (or merely odd) IdP or client could put in a claim.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)


def principal(body: object) -> str:
    return base64.b64encode(json.dumps(body).encode()).decode()


async def easyauth(monkeypatch) -> None:
    monkeypatch.setenv("AUTH_MODE", "easyauth")
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    await runtime.reset()


async def as_caller(headers: dict[str, str]) -> tuple[int, object, dict[str, str]]:
    """GET /api/me: authenticates, then one Table read (no ACS call, nothing created)."""
    return await call("get_me", request("GET", "me", headers=headers))


def sign_any(issuer, claims: dict) -> str:
    """Sign claims as they are (jwt.encode refuses a non-string iss): the issuer's real key,
    so only the claims' values are hostile."""
    key = issuer.keys.signing_key("RS256")
    payload = json.dumps(claims).encode()
    return jwt.api_jws.PyJWS().encode(payload, key.private_key, algorithm="RS256",
                                      headers={"kid": key.kid, "typ": "JWT"})


def assert_401(result) -> None:
    status, body, headers = result
    assert status == 401, (status, body)
    assert body["error"]["code"] == "unauthenticated"
    assert headers["WWW-Authenticate"].startswith("Bearer")


# -- the two reproductions of the issue -----------------------------------------------------

@pytest.mark.parametrize("depth", [1000, 5000, 50000])
async def test_a_deeply_nested_client_principal_is_a_401(monkeypatch, depth):
    await easyauth(monkeypatch)
    raw = base64.b64encode(b"[" * depth).decode()
    assert_401(await as_caller({"x-ms-client-principal": raw}))
    inside = b'{"claims": ' + b"[" * depth + b"]" * depth + b"}"
    assert_401(await as_caller({"x-ms-client-principal": base64.b64encode(inside).decode()}))


@pytest.mark.parametrize("exp", [10**400, -(10**400), float("inf"), 10**20],
                         ids=["10**400", "-10**400", "Infinity", "10**20"])
async def test_an_exp_beyond_float_range_is_a_401(issuer, exp):
    # PyJWT checks exp as int(exp), which holds 10**400; the app then needs it as a time.
    token = issuer.mint("far-future", extra_claims={"exp": exp})
    result = await as_caller({"authorization": f"Bearer {token}"})
    if exp == 10**20:
        assert result[0] == 404, result  # far, but a time: authenticated (no mapping yet)
        # ... and answered from the verified-token cache, which holds it at most an hour.
        assert (await as_caller({"authorization": f"Bearer {token}"}))[0] == 404
        return
    assert_401(result)


async def test_a_deeply_nested_token_header_or_payload_is_a_401(issuer):
    def seg(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    nested = seg(b"[" * 5000)  # 6,668 characters: inside the 8 KiB token cap
    assert_401(await as_caller({"authorization": f"Bearer {nested}.e30.c2ln"}))
    claims = jwt.decode(issuer.mint("nested"), options={"verify_signature": False})
    claims["roles"] = json.loads("[" * 50 + "]" * 50)
    signed = sign_any(issuer, claims)
    assert (await as_caller({"authorization": f"Bearer {signed}"}))[0] == 404  # not admin
    deep = b"[" * 2500 + b"]" * 2500  # inside the 8 KiB token cap once base64url-encoded
    payload = json.dumps(claims).encode()[:-1] + b', "deep": ' + deep + b"}"
    key = issuer.keys.signing_key("RS256")
    signed = jwt.api_jws.PyJWS().encode(payload, key.private_key, algorithm="RS256",
                                        headers={"kid": key.kid})
    assert len(signed) < 8192
    assert_401(await as_caller({"authorization": f"Bearer {signed}"}))


# -- properties: never a 5xx ----------------------------------------------------------------

@PROPERTY
@given(value=st.text(max_size=300) | st.builds(
    lambda a, b, c: f"Bearer {a}.{b}.{c}",
    *[st.text(alphabet=string.ascii_letters + string.digits + "-_=", max_size=60)] * 3))
async def test_any_authorization_header_is_never_a_5xx(value):
    status, body, _ = await as_caller({"authorization": value})
    assert status in (401, 404), (status, body)


@PROPERTY
@given(body=json_values | st.fixed_dictionaries({
    "claims": st.lists(st.dictionaries(st.sampled_from(["typ", "val", "x"]), json_values,
                                       max_size=3), max_size=4),
    "role_typ": json_values}), raw=st.none() | st.binary(max_size=200) | st.text(max_size=200))
async def test_any_client_principal_is_never_a_5xx(monkeypatch, body, raw):
    await easyauth(monkeypatch)
    if raw is None:
        header = principal(body)
    elif isinstance(raw, bytes):
        header = base64.b64encode(raw).decode()
    else:
        header = raw
    status, got, _ = await as_caller({"x-ms-client-principal": header})
    assert status in (401, 404), (status, got)


CLAIMS = ("exp", "nbf", "iat", "iss", "aud", "sub", "oid", "roles", "scp", "scope")


@PROPERTY
@given(name=st.sampled_from(CLAIMS), value=json_values)
async def test_any_signed_claim_value_is_never_a_5xx(issuer, name, value):
    claims = jwt.decode(issuer.mint("claims-fuzz", roles=[ADMIN]),
                        options={"verify_signature": False})
    claims[name] = value
    token = sign_any(issuer, claims)
    status, body, _ = await call("get_user", request(
        "GET", "users/x", token=token, route_params={"userId": "nobody"}))
    assert status in (401, 403, 404), (name, value, status, body)
