"""Attacks on shared.jws and shared.auth's use of it that the differential test against
PyJWT cannot catch, because PyJWT (or the PyJWT-era shared/auth.py) shared the weakness.
In-process through the worker's entry points, against the session's Azurite, ACS emulator
and local issuer (localdev.issuer): every token below is signed by the issuer's real keys
unless it says otherwise."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from localdev.azurite import free_port
from shared import runtime
from tests.calls import call, request

pytestmark = pytest.mark.usefixtures("app_env")


async def issue(token: str):
    return await call("issue_token", request("POST", "token", token=token))


@contextlib.asynccontextmanager
async def key_server(handler: Any) -> AsyncIterator[str]:
    """A loopback server answering ``GET /keys`` with ``handler``, set as AUTH_JWKS_URI for
    a freshly built worker; yields its URL."""
    from aiohttp import web

    app = web.Application()
    app.router.add_get("/keys", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/keys"
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AUTH_JWKS_URI", url)
            await runtime.reset()
            yield url
    finally:
        await runtime.reset()
        await runner.cleanup()


async def test_a_valid_token_right_after_a_failed_key_fetch_is_a_503_not_a_401(
        issuer, monkeypatch):
    """The identity provider is down at the worker's first request: every caller must get
    503 + Retry-After (retry later), not 401 "signing key is unknown", which tells a client
    its token is bad and sends its user back to sign-in. The first request fetched and
    failed; the next ones fall inside JWKS_MIN_REFRESH_SECONDS, where an unknown kid used
    to be answered 401 at once although no key was ever known."""

    monkeypatch.setenv("AUTH_JWKS_URI", f"http://127.0.0.1:{free_port()}/keys")
    await runtime.reset()
    token = issuer.mint("alice")
    for attempt in range(3):
        status, body, headers = await issue(token)
        assert status == 503, (attempt, body)
        assert body["error"]["code"] == "unavailable"
        assert int(headers["Retry-After"]) >= 1


# -- held: signed by the issuer's real key, hostile anyway ---------------------------------

MARKER = "zq9-leak-marker"


def sign_raw(issuer, claims_json: bytes, **header) -> str:
    """Claims bytes exactly as given (duplicate keys, raw escapes), the issuer's real key."""
    import jwt

    key = issuer.keys.signing_key("RS256")
    return jwt.api_jws.PyJWS().encode(claims_json, key.private_key, algorithm="RS256",
                                      headers={"kid": key.kid, "typ": "JWT", **header})


def claims_json(issuer, **changes) -> bytes:
    import json

    import jwt

    claims = jwt.decode(issuer.mint("held"), options={"verify_signature": False})
    claims.update(changes)
    return json.dumps(claims).encode()


@pytest.mark.parametrize("case", [
    # A lone surrogate is valid JSON ("\udcff") but no UTF-8: it must not reach Table
    # Storage or ACS as a user id (keys.validate_user_id, "must be valid unicode").
    "oid_lone_surrogate",
    # bool is an int in Python: int(True) == 1, so exp=true is 1970 and expired (as PyJWT).
    "exp_true",
    # RFC 7519 section 4.1.3: aud is a string or an array of strings.
    "aud_list_with_non_strings",
    # section 4.1.1: iss is a StringOrURI; a list holding the issuer is not it.
    "iss_list",
    # A user claim of the wrong type is refused, not skipped in favour of sub (which
    # would let a token name its user through the weaker claim).
    "oid_a_list_naming_the_victim",
])
async def test_signed_hostile_claims_are_a_401_that_echoes_nothing(issuer, acs, caplog, case):
    payload = {
        "oid_lone_surrogate": lambda: claims_json(issuer, oid=MARKER + "\udcff",
                                                  sub=MARKER + "\udcff"),
        "exp_true": lambda: claims_json(issuer, exp=True, sub=MARKER, oid=MARKER),
        "aud_list_with_non_strings": lambda: claims_json(
            issuer, aud=[issuer.audience, 1, None], sub=MARKER, oid=MARKER),
        "iss_list": lambda: claims_json(issuer, iss=[issuer.issuer], sub=MARKER, oid=MARKER),
        "oid_a_list_naming_the_victim": lambda: claims_json(issuer, oid=[MARKER], sub="victim"),
    }[case]()
    token = sign_raw(issuer, payload)
    before = acs.stats()["requests"].get("createIdentity", 0)
    status, body, headers = await issue(token)
    assert status == 401, body
    assert body["error"]["code"] == "unauthenticated"
    assert headers["WWW-Authenticate"].startswith("Bearer")
    text = str(body) + str(headers) + caplog.text
    for secret in (MARKER, token.split(".")[1][:40], token.split(".")[2][:40]):
        assert secret not in text
    assert acs.stats()["requests"].get("createIdentity", 0) == before


async def test_a_duplicate_claim_is_read_as_its_last_value(issuer, acs):
    """RFC 7519 section 4: a JWT parser must reject duplicate claim names or use the
    lexically last one (RFC 7515 section 4 says the same of header parameters, where
    the corpus of tests/unit/test_jws_differential.py has a duplicate alg). As PyJWT
    (json.loads), the last wins: the token acts for dup-last, never for dup-first."""
    first = await issue(issuer.mint("dup-first"))
    last = await issue(issuer.mint("dup-last"))
    assert first[0] == last[0] == 200
    assert first[1]["acsUserId"] != last[1]["acsUserId"]
    payload = claims_json(issuer, sub="dup-last")
    payload = payload.replace(b'"oid": ', b'"_oid": ')  # the issuer's oid out of the way
    payload = payload[:-1] + b', "oid": "dup-first", "oid": "dup-last"}'
    assert payload.count(b'"oid": ') == 2
    status, body, _ = await issue(sign_raw(issuer, payload))
    assert status == 200, body
    assert body["acsUserId"] == last[1]["acsUserId"]


async def test_an_rsa_and_an_ec_key_sharing_one_kid_both_verify(issuer):
    """RFC 7517 section 4.5: keys in one JWK Set SHOULD have distinct kids, "One example in
    which different keys might use the same "kid" value is if they have different "kty"
    (key type) values but are considered to be equivalent alternatives". The cache kept one
    key per kid (the last, as PyJWK's dict did), so the other algorithm's valid tokens were
    refused. The issuer's own two keys, published under one kid by a loopback JWKS server
    (the local issuer names each key by its thumbprint)."""
    from aiohttp import web

    shared_kid = "one-kid-two-ktys"
    jwks = {"keys": [{**key.jwk(), "kid": shared_kid} for key in issuer.keys.keys]}
    assert {entry["kty"] for entry in jwks["keys"]} == {"RSA", "EC"}

    async def keys(_: web.Request) -> web.Response:
        return web.json_response(jwks)

    async with key_server(keys):
        for alg in ("RS256", "ES256"):
            token = issuer.mint(f"same-kid-{alg}", alg=alg, headers={"kid": shared_kid})
            status, body, _ = await issue(token)
            assert status == 200, (alg, body)


# -- the identity provider's documents: bounded, whatever it answers -----------------------

@pytest.mark.parametrize("shape", ["too-large", "too-large-chunked", "deeply-nested"])
async def test_a_hostile_key_document_is_a_503_never_a_500(issuer, shape):
    """The JWKS (and the discovery document) come from the configured issuer, but a
    misconfigured AUTH_JWKS_URI or a broken proxy can answer anything. Real documents are
    a few KB (Entra ID's JWKS about 10 KB): one over runtime.MAX_DOCUMENT_BYTES is refused
    as it streams in (with or without Content-Length), never buffered whole, and JSON
    nested too deep for json.loads (RecursionError) is an unusable answer too: 503
    "keys unavailable", as for an unreachable issuer, and no 500."""
    from aiohttp import web

    big = b'{"keys": [], "padding": "' + b"x" * (runtime.MAX_DOCUMENT_BYTES + 10) + b'"}'
    nested = b"[" * 100_000 + b"]" * 100_000

    async def keys(request: web.Request) -> web.StreamResponse:
        if shape == "deeply-nested":
            return web.Response(body=nested, content_type="application/json")
        if shape == "too-large":
            return web.Response(body=big, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(big), 65536):
            await response.write(big[start:start + 65536])
        await response.write_eof()
        return response

    async with key_server(keys):
        status, body, headers = await issue(issuer.mint("alice"))
        assert status == 503, body
        assert body["error"]["code"] == "unavailable"
        assert int(headers["Retry-After"]) >= 1
