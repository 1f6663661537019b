"""Tokens shaped like each common identity provider's, end to end in-process.

Every token is signed by the local issuer's real keys (``AUTH_JWKS_URI`` points at it) and
carries the claims the provider documents; ``AUTH_ISSUER`` is the provider's real issuer.
The right user id and admin flag are proved through the API itself: ``POST /api/token``
creates the caller's identity, and ``GET /api/users/{id}`` with the same token answers
200 with that identity for an admin, 403 otherwise.

Claim shapes, from the providers' documentation:
- Entra ID v1/v2: "Access token claims reference" (learn.microsoft.com/entra/identity-platform/
  access-token-claims-reference): v1 ``iss`` https://sts.windows.net/<tenant>/ (trailing /),
  v2 https://login.microsoftonline.com/<tenant>/v2.0; ``oid``, ``sub``, ``roles`` (list),
  ``scp`` (space-separated string).
- Entra External ID: issuer https://<tenant-id>.ciamlogin.com/<tenant-id>/v2.0, v2 claims.
- Auth0: ``iss`` https://<domain>/ (trailing /), ``aud`` a list (API identifier + userinfo),
  ``sub`` "auth0|...", ``scope`` string, roles only as a namespaced custom claim such as
  https://example.com/roles (auth0.com/docs/secure/tokens/json-web-tokens/create-custom-claims).
- Okta custom authorization server: ``iss`` https://<org>/oauth2/default, ``aud``
  api://default, ``sub`` the login (an email), ``uid`` the user id, ``scp`` a JSON list,
  ``groups`` a custom claim (developer.okta.com/docs/guides/customize-tokens-groups-claim).
- Keycloak: ``iss`` https://<host>/realms/<realm>, ``realm_access: {"roles": [...]}``
  (the realm-roles mapper's claim name is realm_access.roles), ``scope`` string.
- Amazon Cognito: ``iss`` https://cognito-idp.<region>.amazonaws.com/<pool>; ID tokens carry
  ``aud`` (the app client id) and ``cognito:groups``; access tokens carry ``client_id`` and
  no ``aud`` (docs.aws.amazon.com/cognito/latest/developerguide/
  amazon-cognito-user-pools-using-the-access-token.html).
- Google ID tokens: ``iss`` https://accounts.google.com (or accounts.google.com), ``aud`` the
  OAuth client id, ``sub`` a numeric string, no roles
  (developers.google.com/identity/gsi/web/guides/verify-google-id-token).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from shared import runtime
from shared.config import load_settings
from shared.keys import path_form
from tests.calls import call, request

pytestmark = pytest.mark.usefixtures("app_env")

ADMIN = "TokenService.Admin"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "6e74172b-be56-4843-9ff4-e66a39bb12e3"


@dataclass(frozen=True)
class Case:
    issuer: str
    audience: str
    claims: dict[str, Any]
    user: str | None = None  # the expected user id; None: refused
    admin: bool = False
    status: int = 200  # the refusal's status when user is None
    message: str = ""  # a fragment of the refusal's message
    settings: dict[str, str] = field(default_factory=dict)


def _now() -> dict[str, int]:
    now = int(time.time())
    return {"iat": now, "nbf": now, "exp": now + 3600}


OID = "00000000-0000-0000-66f3-3332eca7ea81"
ENTRA_V1 = f"https://sts.windows.net/{TENANT}/"
ENTRA_V2 = f"https://login.microsoftonline.com/{TENANT}/v2.0"
CIAM = f"https://{TENANT}.ciamlogin.com/{TENANT}/v2.0"
AUTH0 = "https://example-tenant.us.auth0.com/"
OKTA = "https://dev-133337.okta.com/oauth2/default"
KEYCLOAK = "https://sso.example.com/realms/acme"
COGNITO = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"
GOOGLE = "https://accounts.google.com"


def entra_v1(**extra: Any) -> dict[str, Any]:
    return {"aud": "api://acs-token-service", "iss": ENTRA_V1, "ver": "1.0", "tid": TENANT,
            "oid": OID, "sub": "l3_roISQU222bULS9yi2k0XpqpOiMz5H3ZACo1GeXA", "appid": CLIENT,
            "upn": "alice@contoso.com", "scp": "access_as_user", "roles": [ADMIN], **extra}


def entra_v2(**extra: Any) -> dict[str, Any]:
    return {"aud": CLIENT, "iss": ENTRA_V2, "ver": "2.0", "tid": TENANT, "azp": CLIENT,
            "oid": OID, "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
            "preferred_username": "alice@contoso.com", "scp": "access_as_user Files.Read",
            **extra}


CASES: dict[str, Case] = {
    "entra-v1": Case(ENTRA_V1, "api://acs-token-service", entra_v1(), user=OID, admin=True,
                     settings={"AUTH_REQUIRED_SCOPES": "access_as_user"}),
    "entra-v1-issuer-without-slash": Case(
        ENTRA_V1.rstrip("/"), "api://acs-token-service", entra_v1(), status=401,
        message="another issuer"),
    "entra-v2": Case(ENTRA_V2, CLIENT, entra_v2(), user=OID, admin=False,
                     settings={"AUTH_REQUIRED_SCOPES": "access_as_user"}),
    "entra-v2-missing-scope": Case(
        ENTRA_V2, CLIENT, entra_v2(scp="Files.Read"), status=403,
        message="required scope 'access_as_user'",
        settings={"AUTH_REQUIRED_SCOPES": "access_as_user"}),
    "entra-v2-app-only-token": Case(  # client credentials: roles, no scp
        ENTRA_V2, CLIENT, entra_v2(scp=None, roles=[ADMIN]), status=403,
        message="required scope", settings={"AUTH_REQUIRED_SCOPES": "access_as_user"}),
    "entra-external-id": Case(
        CIAM, CLIENT, {"aud": CLIENT, "iss": CIAM, "ver": "2.0", "tid": TENANT, "oid": OID,
                       "sub": "x4Dl7y0pkjUeQmBNzBKkmJmLd1s8qRsOE2UDdp8Tt7M", "azp": CLIENT,
                       "scp": "access_as_user", "roles": [ADMIN]},
        user=OID, admin=True),
    "auth0": Case(
        AUTH0, "https://api.example.com",
        {"iss": AUTH0, "sub": "auth0|64b7f9c2a1e3d4f5a6b7c8d9",
         "aud": ["https://api.example.com", AUTH0 + "userinfo"], "azp": "xyzClientId",
         "scope": "openid profile email tokens:issue", "permissions": ["tokens:issue"],
         "https://example.com/roles": [ADMIN]},
        user="auth0|64b7f9c2a1e3d4f5a6b7c8d9", admin=True,
        settings={"AUTH_ROLES_CLAIM": "https://example.com/roles",
                  "AUTH_REQUIRED_SCOPES": "tokens:issue"}),
    "auth0-without-roles-claim-setting": Case(
        AUTH0, "https://api.example.com",
        {"iss": AUTH0, "sub": "auth0|64b7f9c2a1e3d4f5a6b7c8d9", "aud": "https://api.example.com",
         "https://example.com/roles": [ADMIN]},
        user="auth0|64b7f9c2a1e3d4f5a6b7c8d9", admin=False),
    "okta": Case(
        OKTA, "api://default",
        {"ver": 1, "jti": "AT.x", "iss": OKTA, "aud": "api://default", "cid": "0oa1client",
         "uid": "00u1a2b3c4d5e6f7g8h9", "sub": "alice@example.com",
         "scp": ["openid", "email", "tokens.issue"], "groups": ["Everyone", ADMIN]},
        user="00u1a2b3c4d5e6f7g8h9", admin=True,
        settings={"AUTH_USER_CLAIM": "uid", "AUTH_ROLES_CLAIM": "groups",
                  "AUTH_REQUIRED_SCOPES": "tokens.issue"}),
    "okta-groups-as-a-string": Case(
        OKTA, "api://default",
        {"iss": OKTA, "aud": "api://default", "uid": "00u9", "sub": "bob@example.com",
         "scp": ["openid"], "groups": ADMIN},
        user="00u9", admin=True,
        settings={"AUTH_USER_CLAIM": "uid", "AUTH_ROLES_CLAIM": "groups"}),
    "keycloak": Case(
        KEYCLOAK, "acs-token-service",
        {"iss": KEYCLOAK, "aud": ["acs-token-service", "account"],
         "sub": "f1b2c3d4-0000-4000-8000-9a8b7c6d5e4f", "typ": "Bearer", "azp": "web-app",
         "realm_access": {"roles": ["offline_access", "uma_authorization", ADMIN]},
         "resource_access": {"account": {"roles": ["manage-account"]}},
         "scope": "openid profile email", "preferred_username": "alice"},
        user="f1b2c3d4-0000-4000-8000-9a8b7c6d5e4f", admin=True,
        settings={"AUTH_ROLES_CLAIM": "realm_access.roles"}),
    "keycloak-top-level-key-wins-over-the-path": Case(
        KEYCLOAK, "acs-token-service",
        {"iss": KEYCLOAK, "aud": "acs-token-service", "sub": "kc-user-2",
         "realm_access.roles": ["viewer"], "realm_access": {"roles": [ADMIN]}},
        user="kc-user-2", admin=False, settings={"AUTH_ROLES_CLAIM": "realm_access.roles"}),
    "cognito-id-token": Case(
        COGNITO, "7l3b1rcp4hmq2vbe0s5bn7a4f0",
        {"iss": COGNITO, "aud": "7l3b1rcp4hmq2vbe0s5bn7a4f0", "token_use": "id",
         "sub": "94f8a4e8-7021-70b5-2a6c-1d8e2a4b6c8d", "cognito:username": "alice",
         "cognito:groups": [ADMIN], "email": "alice@example.com", "auth_time": 1},
        user="94f8a4e8-7021-70b5-2a6c-1d8e2a4b6c8d", admin=True,
        settings={"AUTH_ROLES_CLAIM": "cognito:groups"}),
    "cognito-access-token": Case(
        COGNITO, "7l3b1rcp4hmq2vbe0s5bn7a4f0",
        {"iss": COGNITO, "client_id": "7l3b1rcp4hmq2vbe0s5bn7a4f0", "token_use": "access",
         "sub": "94f8a4e8-7021-70b5-2a6c-1d8e2a4b6c8d", "username": "alice",
         "scope": "aws.cognito.signin.user.admin", "cognito:groups": [ADMIN]},
        status=401, message="no 'aud' claim", settings={"AUTH_ROLES_CLAIM": "cognito:groups"}),
    "google": Case(
        GOOGLE, "1234567890-abc123def456.apps.googleusercontent.com",
        {"iss": GOOGLE, "azp": "1234567890-abc123def456.apps.googleusercontent.com",
         "aud": "1234567890-abc123def456.apps.googleusercontent.com",
         "sub": "110169484474386276334", "email": "alice@gmail.com", "email_verified": True},
        user="110169484474386276334", admin=False),
    "google-issuer-without-scheme": Case(
        GOOGLE, "1234567890-abc123def456.apps.googleusercontent.com",
        {"iss": "accounts.google.com", "aud": "1234567890-abc123def456.apps.googleusercontent.com",
         "sub": "110169484474386276334"},
        status=401, message="another issuer"),
}


async def configure(monkeypatch, issuer, case: Case) -> None:
    monkeypatch.setenv("AUTH_ISSUER", case.issuer)
    monkeypatch.setenv("AUTH_AUDIENCE", case.audience)
    monkeypatch.setenv("AUTH_JWKS_URI", issuer.jwks_uri)
    for name in ("AUTH_USER_CLAIM", "AUTH_ROLES_CLAIM", "AUTH_REQUIRED_SCOPES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in case.settings.items():
        monkeypatch.setenv(name, value)
    await runtime.reset()


@pytest.mark.parametrize("name", list(CASES))
async def test_provider_token_shapes(monkeypatch, issuer, acs, name):
    case = CASES[name]
    await configure(monkeypatch, issuer, case)
    claims = {**_now(), **{k: v for k, v in case.claims.items() if v is not None}}
    token = issuer.keys.sign(claims)
    status, body, headers = await call("issue_token", request("POST", "token", token=token))
    if case.user is None:
        assert status == case.status, body
        assert case.message in body["error"]["message"], body
        if status == 401:
            assert headers["WWW-Authenticate"].startswith("Bearer")
        assert acs.stats()["requests"].get("createIdentity", 0) == 0
        return
    assert status == 200, body
    acs_user = body["acsUserId"]
    status, got, _ = await call("get_user", request(
        "GET", "users/x", token=token, route_params={"userId": path_form(case.user)}))
    if case.admin:
        assert status == 200 and got["acsUserId"] == acs_user, got
    else:
        assert status == 403, got
        status, me, _ = await call("get_me", request("GET", "me", token=token))
        assert status == 200 and me["acsUserId"] == acs_user


async def test_a_trailing_slash_issuer_is_discovered_and_compared_as_configured(
        monkeypatch, issuer):
    """OpenID Connect Discovery 1.0 section 4: the terminating '/' of the issuer is removed
    before /.well-known/openid-configuration is appended; the token's iss must still equal
    the issuer exactly as configured (Entra ID v1 and Auth0 issuers end with '/')."""
    with_slash = issuer.issuer + "/"
    monkeypatch.setenv("AUTH_ISSUER", with_slash)
    monkeypatch.delenv("AUTH_JWKS_URI", raising=False)
    await runtime.reset()
    before = issuer.stats()
    user = "slash-" + uuid.uuid4().hex[:8]
    status, body, _ = await call("issue_token", request(
        "POST", "token", token=issuer.mint(user, issuer=with_slash)))
    assert status == 200, body
    assert issuer.stats()["discoveryRequests"] > before["discoveryRequests"]
    status, body, _ = await call("issue_token", request(
        "POST", "token", token=issuer.mint(user, issuer=issuer.issuer)))
    assert status == 401 and "another issuer" in body["error"]["message"], body


def test_roles_claim_and_required_scopes_settings(app_env):
    base = dict(app_env)
    settings = load_settings(base)
    assert settings.auth_roles_claim == "roles" and settings.auth_required_scopes == ()
    assert settings.auth_issuer == base["AUTH_ISSUER"]
    settings = load_settings({**base, "AUTH_ISSUER": ENTRA_V1,
                              "AUTH_ROLES_CLAIM": " realm_access.roles ",
                              "AUTH_REQUIRED_SCOPES": "access_as_user, tokens:issue  x y,"})
    assert settings.auth_issuer == ENTRA_V1
    assert settings.auth_roles_claim == "realm_access.roles"
    assert settings.auth_required_scopes == ("access_as_user", "tokens:issue", "x", "y")


async def test_easyauth_principal_uses_the_roles_claim_and_scopes(monkeypatch, acs):
    """X-MS-CLIENT-PRINCIPAL lists claims as typ/val pairs; App Service names Entra's scp
    http://schemas.microsoft.com/identity/claims/scope."""
    import base64
    import json

    def principal(*claims: tuple[str, str]) -> dict[str, str]:
        body = {"auth_typ": "aad", "name_typ": "name", "role_typ": "roles",
                "claims": [{"typ": t, "val": v} for t, v in claims]}
        return {"x-ms-client-principal": base64.b64encode(json.dumps(body).encode()).decode()}

    monkeypatch.setenv("AUTH_MODE", "easyauth")
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    monkeypatch.setenv("AUTH_ROLES_CLAIM", "groups")
    monkeypatch.setenv("AUTH_REQUIRED_SCOPES", "access_as_user")
    await runtime.reset()
    scope = "http://schemas.microsoft.com/identity/claims/scope"
    admin = principal(("oid", "ea-admin"), ("groups", "Everyone"), ("groups", ADMIN),
                      (scope, "access_as_user"))
    assert (await call("issue_token", request("POST", "token", headers=admin)))[0] == 200
    status, got, _ = await call("get_user", request(
        "GET", "users/x", headers=admin, route_params={"userId": "ea-admin"}))
    assert status == 200, got
    no_scope = principal(("oid", "ea-admin"), ("groups", ADMIN))
    status, body, _ = await call("get_me", request("GET", "me", headers=no_scope))
    assert status == 403 and "access_as_user" in body["error"]["message"]
