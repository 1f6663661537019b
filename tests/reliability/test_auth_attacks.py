"""Authentication attacks beyond tests/functions/test_api.py's matrix (alg none, HS256 with
the public key, wrong iss/aud, expired, nbf, unknown kid, tampered, oversized, other user,
no role, client-principal header in jwt mode are covered there)."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared import runtime
from tests.calls import call, request
from tests.reliability.support import ADMIN

pytestmark = pytest.mark.usefixtures("app_env")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def header_of(token: str) -> dict:
    return jwt.get_unverified_header(token)


async def admin_get(token: str, user: str = "victim"):
    return await call("get_user", request("GET", "users/x", token=token,
                                          route_params={"userId": user}))


async def issue(token: str):
    return await call("issue_token", request("POST", "token", token=token))


def assert_401(result) -> None:
    status, body, headers = result
    assert status == 401, body
    assert body["error"]["code"] == "unauthenticated"
    assert headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_flood_of_unknown_kids_does_not_hammer_the_jwks_endpoint(issuer, acs):
    before = issuer.stats()
    forged = [issuer.mint("flooder", headers={"kid": secrets.token_urlsafe(16)})
              for _ in range(200)]
    results = await asyncio.gather(*(issue(token) for token in forged))
    for result in results:
        assert_401(result)
    after = issuer.stats()
    assert after["jwksRequests"] - before["jwksRequests"] <= 2
    assert after["discoveryRequests"] - before["discoveryRequests"] <= 2
    # Genuine callers are unaffected, and cost no further JWKS fetch.
    status, _, _ = await issue(issuer.mint("genuine"))
    assert status == 200
    assert issuer.stats()["jwksRequests"] - before["jwksRequests"] <= 2
    assert acs.stats()["requests"].get("createIdentity", 0) == 1


async def test_roles_added_to_the_payload_without_re_signing_are_rejected(issuer):
    genuine = issuer.mint("mallory")
    head, _, signature = genuine.split(".")
    claims = claims_of(genuine)
    for forged_claims in ({**claims, "roles": [ADMIN]}, {**claims, "roles": ADMIN},
                          {**claims, "roles": [ADMIN], "sub": "root", "oid": "root"}):
        payload = b64(json.dumps(forged_claims).encode())
        assert_401(await admin_get(f"{head}.{payload}.{signature}"))
    # Same claims, JSON re-serialised differently (whitespace): still a different signing input.
    spaced = b64(json.dumps(claims, indent=1).encode())
    assert_401(await issue(f"{head}.{spaced}.{signature}"))
    # The signature of an admin token grafted onto a user's token does not carry the role.
    admin = issuer.mint("mallory", roles=[ADMIN])
    assert_401(await admin_get(f"{head}.{admin.split('.')[1]}.{signature}"))
    assert_401(await admin_get(f"{head}.{genuine.split('.')[1]}.{admin.split('.')[2]}"))
    assert (await admin_get(genuine))[0] == 403  # the untouched token: authenticated, no role


async def test_a_token_signed_by_another_key_under_the_issuers_kid_is_rejected(issuer):
    genuine = issuer.mint("mallory")
    claims = {**claims_of(genuine), "roles": [ADMIN]}
    kid = header_of(genuine)["kid"]
    attacker_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert_401(await admin_get(jwt.encode(claims, attacker_rsa, algorithm="RS256",
                                          headers={"kid": kid})))
    attacker_ec = ec.generate_private_key(ec.SECP256R1())
    assert_401(await admin_get(jwt.encode(claims, attacker_ec, algorithm="ES256",
                                          headers={"kid": issuer.keys.kid_es256})))
    # The issuer's EC kid with an RSA signature: the algorithm must match the key.
    assert_401(await admin_get(jwt.encode(claims, attacker_rsa, algorithm="RS256",
                                          headers={"kid": issuer.keys.kid_es256})))


async def test_keys_named_by_the_token_itself_are_never_trusted(issuer):
    """jwk / jku / x5u headers point at the attacker's own key; only the issuer's JWKS counts."""
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key()))
    claims = {**claims_of(issuer.mint("mallory")), "roles": [ADMIN]}
    for extra in ({"jwk": {**public, "kid": "mine"}, "kid": "mine"},
                  {"jku": "https://evil.example/jwks.json", "kid": "mine"},
                  {"x5u": "https://evil.example/cert.pem", "kid": "mine"}):
        assert_401(await admin_get(jwt.encode(claims, attacker, algorithm="RS256",
                                              headers=extra)))


@pytest.mark.parametrize("case", ["stripped_signature", "empty_signature_segment",
                                  "four_segments", "huge_kid", "kid_path_traversal",
                                  "kid_not_a_string", "lowercase_alg", "none_in_capitals"])
async def test_malformed_headers_and_segments_are_rejected(issuer, case):
    genuine = issuer.mint("mallory")
    head, payload, signature = genuine.split(".")
    header = header_of(genuine)

    def with_header(**changes) -> str:
        return b64(json.dumps({**header, **changes}).encode()) + f".{payload}.{signature}"

    token = {
        "stripped_signature": f"{head}.{payload}",
        "empty_signature_segment": f"{head}.{payload}.",
        "four_segments": f"{genuine}.{signature}",
        "huge_kid": with_header(kid="k" * 5000),
        "kid_path_traversal": with_header(kid="../../../../etc/passwd"),
        "kid_not_a_string": with_header(kid={"$ne": None}),
        "lowercase_alg": with_header(alg="rs256"),
        "none_in_capitals": with_header(alg="NONE"),
    }[case]
    assert_401(await issue(token))


async def test_other_tokens_of_the_ecosystem_are_not_caller_credentials(issuer, acs):
    """An ACS access token, a Teams (Entra v1) token and a managed-identity token are
    real, signed tokens, but not for this API."""
    status, body, _ = await issue(issuer.mint("alice"))
    assert status == 200
    assert_401(await issue(body["token"]))
    assert_401(await issue(issuer.mint_teams(oid="alice", appid="app")))
    assert_401(await issue(issuer.mint("alice", audience="https://communication.azure.com")))


@pytest.mark.parametrize("claims", [
    {"roles": ["tokenservice.admin"]}, {"roles": ["TokenService.Admin "]},
    {"roles": [["TokenService.Admin"]]}, {"roles": {"TokenService.Admin": True}},
    {"role": "TokenService.Admin"}, {"scp": "TokenService.Admin"},
    {"groups": ["TokenService.Admin"]}, {"wids": ["TokenService.Admin"]},
], ids=["lowercase", "trailing-space", "nested-list", "object", "role", "scp", "groups", "wids"])
async def test_only_the_exact_role_in_roles_grants_admin(issuer, claims):
    token = issuer.mint("mallory", extra_claims=claims)
    status, body, _ = await admin_get(token)
    assert status == 403, body


@pytest.mark.parametrize("sub", ["a\x00b", "line\nbreak", "x" * 300, ""])
async def test_signed_but_unusable_user_claims_are_rejected(issuer, acs, sub):
    token = issuer.mint(sub or "placeholder", extra_claims={"sub": sub, "oid": sub})
    assert_401(await issue(token))
    assert acs.stats()["requests"].get("createIdentity", 0) == 0


async def test_oid_wins_over_sub_so_sub_cannot_be_used_to_impersonate(issuer, acs):
    """Entra puts the stable object id in oid; a token whose sub names a victim still acts
    for its own oid."""
    status, victim, _ = await issue(issuer.mint("victim"))
    assert status == 200
    status, body, _ = await issue(issuer.mint("victim", oid="mallory"))
    assert status == 200 and body["acsUserId"] != victim["acsUserId"]


async def test_identity_provider_down_fails_closed_with_503(issuer, monkeypatch):
    from localdev.azurite import free_port

    monkeypatch.setenv("AUTH_JWKS_URI", f"http://127.0.0.1:{free_port()}/keys")
    await runtime.reset()
    status, body, headers = await issue(issuer.mint("alice"))
    assert status == 503 and int(headers["Retry-After"]) >= 1
    assert body["error"]["code"] == "unavailable"
    assert "127.0.0.1" not in json.dumps(body)


async def test_non_ascii_bytes_in_the_authorization_header_are_a_401():
    for value in ("Bearer \udce5\udc97\udccd", "Bearer abc.\udcff.def"):
        assert_401(await call("issue_token", request(
            "POST", "token", headers={"authorization": value})))
