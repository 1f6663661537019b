"""Who is calling: a verified bearer JWT (``AUTH_MODE=jwt``) or the App Service
Authentication principal header (``AUTH_MODE=easyauth``).

JWT checks (:mod:`shared.jws`, not PyJWT: see there why): RS256/ES256 only (so ``none``
and HMAC-with-the-public-key confusion are impossible), signature against the issuer's
JWKS, ``iss``, ``aud``, ``exp`` and ``nbf`` with a small leeway. The JWKS is cached; an
unknown ``kid`` triggers at most one refetch per :data:`JWKS_MIN_REFRESH_SECONDS`, so a
flood of forged kids cannot hammer the issuer. Verified tokens are remembered until they
expire, so a client reusing its token costs one dict lookup, not a signature check.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from . import jws
from .config import Settings
from .errors import BadRequest, Forbidden, Unauthenticated, Unavailable
from .keys import validate_user_id
from .models import Caller

Fetch = Callable[[str], Awaitable[Any]]

ALGORITHMS = jws.ALGORITHMS
MAX_TOKEN_BYTES = 8192
LEEWAY_SECONDS = 60
JWKS_MIN_REFRESH_SECONDS = 30.0
JWKS_MAX_AGE_SECONDS = 3600.0
#: The most one key refresh (discovery document and JWKS together) may take; requests
#: waiting on it answer 503 after this, whatever the issuer does.
JWKS_FETCH_BUDGET_SECONDS = 3.0
VERIFIED_CACHE_SIZE = 10000
#: A verified token is re-checked at least this often, whatever its ``exp`` says.
VERIFIED_MAX_SECONDS = 3600

#: How App Service Authentication names Entra ID's ``scp`` in X-MS-CLIENT-PRINCIPAL.
_SCOPE_CLAIM_URI = "http://schemas.microsoft.com/identity/claims/scope"

_CLAIM_ALIASES = {
    "oid": ("oid", "http://schemas.microsoft.com/identity/claims/objectidentifier"),
    "sub": ("sub", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"),
}


class JwksCache:
    """The issuer's signing keys by ``kid``, refreshed lazily and rate-limited."""

    def __init__(self, issuer: str, jwks_uri: str | None, fetch: Fetch) -> None:
        # OpenID Connect Discovery 1.0, section 4: a terminating '/' of the issuer is
        # removed before appending /.well-known/openid-configuration (Entra ID v1 and
        # Auth0 issuers end with one; tokens are still compared with the issuer as is).
        self._issuer = issuer.rstrip("/")
        self._jwks_uri = jwks_uri
        self._fetch = fetch
        #: kid -> alg -> key: one kid may name an RSA and an EC key (RFC 7517 section 4.5).
        self._keys: dict[str, dict[str, jws.Key]] = {}
        self._fetched_at = float("-inf")
        #: The last fetch failed: until the next one, no key is "unknown", only unavailable.
        self._failed = False
        self._lock = asyncio.Lock()

    async def key(self, kid: str, alg: str) -> jws.Key:
        """The key named ``kid`` for ``alg``; if ``kid`` names only keys for another
        algorithm, one of those, which :func:`jws.verify` refuses as not matching."""
        age = time.monotonic() - self._fetched_at
        found = self._find(kid, alg)
        if found is not None and age < JWKS_MAX_AGE_SECONDS:
            return found
        if found is None and age < JWKS_MIN_REFRESH_SECONDS:
            if self._failed and not self._keys:
                # Never fetched a key: a 401 would send a valid token's user to sign in.
                raise Unavailable("the identity provider's keys are unavailable")
            raise Unauthenticated("the token's signing key is unknown")
        await self._refresh(self._fetched_at)
        found = self._find(kid, alg)
        if found is None:
            raise Unauthenticated("the token's signing key is unknown")
        return found

    def _find(self, kid: str, alg: str) -> jws.Key | None:
        by_alg = self._keys.get(kid)
        if not by_alg:
            return None
        return by_alg.get(alg) or next(iter(by_alg.values()))

    async def _refresh(self, seen: float) -> None:
        async with self._lock:
            if self._fetched_at != seen:
                return  # another request refreshed while we waited
            try:
                document = await asyncio.wait_for(self._fetch_document(),
                                                  JWKS_FETCH_BUDGET_SECONDS)
                keys: dict[str, dict[str, jws.Key]] = {}
                for entry in document.get("keys", []):
                    if entry.get("kid") and entry.get("use", "sig") == "sig":
                        try:
                            key = jws.parse_jwk(entry)
                        except jws.InvalidKey:
                            continue
                        keys.setdefault(str(entry["kid"]), {})[key.alg] = key
            except (Unavailable, asyncio.TimeoutError, KeyError, TypeError, ValueError,
                    AttributeError):
                self._fetched_at = time.monotonic()
                self._failed = True
                if self._keys:
                    return  # keep serving with the keys we have
                raise Unavailable("the identity provider's keys are unavailable") from None
            self._keys = keys
            self._failed = False
            self._fetched_at = time.monotonic()

    async def _fetch_document(self) -> Any:
        if self._jwks_uri is None:
            config = await self._fetch(f"{self._issuer}/.well-known/openid-configuration")
            self._jwks_uri = str(config["jwks_uri"])
        return await self._fetch(self._jwks_uri)


class JwtAuthenticator:
    def __init__(self, settings: Settings, fetch: Fetch) -> None:
        assert settings.auth_issuer is not None
        self._settings = settings
        self._issuer = settings.auth_issuer
        self._audience = list(settings.auth_audience)
        self._jwks = JwksCache(settings.auth_issuer, settings.auth_jwks_uri, fetch)
        self._verified: OrderedDict[str, tuple[Caller, float]] = OrderedDict()

    async def authenticate(self, headers: Mapping[str, str]) -> Caller:
        token = _bearer(headers)
        hit = self._verified.get(token)
        if hit is not None and hit[1] > time.time():
            return hit[0]
        claims = await self._verify(token)
        expires = _expiry(claims["exp"])
        caller = _caller(claims, self._settings)
        self._remember(token, caller, min(expires, time.time() + VERIFIED_MAX_SECONDS))
        return caller

    async def _verify(self, token: str) -> dict[str, Any]:
        parsed = jws.parse(token)
        key = await self._jwks.key(parsed.kid, parsed.alg)
        return jws.verify(parsed, key, audiences=self._audience, issuer=self._issuer,
                          leeway=LEEWAY_SECONDS)

    def _remember(self, token: str, caller: Caller, expires: float) -> None:
        self._verified[token] = (caller, expires)
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)


class EasyAuthAuthenticator:
    """Trusts ``X-MS-CLIENT-PRINCIPAL``, which App Service Authentication sets and strips
    from client requests. Safe ONLY behind it: anywhere else a client could forge it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def authenticate(self, headers: Mapping[str, str]) -> Caller:
        raw = headers.get("x-ms-client-principal")
        if not raw:
            raise Unauthenticated("no authenticated principal")
        try:
            principal = json.loads(base64.b64decode(raw, validate=False))
            role_type = principal.get("role_typ") or "roles"
            roles_claim = self._settings.auth_roles_claim
            claims: dict[str, Any] = {}
            for item in principal.get("claims", []):
                typ, val = str(item["typ"]), str(item["val"])
                if typ in (role_type, "roles", roles_claim):
                    claims.setdefault(roles_claim, []).append(val)
                else:
                    claims.setdefault(typ, val)
        except (binascii.Error, ValueError, TypeError, KeyError, AttributeError,
                RecursionError):
            # RecursionError: json.loads on thousands of nested arrays.
            raise Unauthenticated("the principal header is malformed") from None
        return _caller(claims, self._settings)


def _expiry(exp: Any) -> float:
    """``exp`` as a time. :func:`jws.verify` checks it as ``int(exp)``, as PyJWT did, which
    holds any integer (``10**400`` passes); a time beyond float range is no usable
    expiry, so a 401."""
    try:
        return float(int(exp))
    except (TypeError, ValueError, OverflowError):
        raise Unauthenticated("the token's expiry is not a usable time") from None


def _bearer(headers: Mapping[str, str]) -> str:
    value = headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("a bearer token is required")
    if len(token) > MAX_TOKEN_BYTES:
        raise Unauthenticated("the bearer token is too large")
    if not token.isascii():
        raise Unauthenticated("the bearer token is malformed")
    return token


def _caller(claims: Mapping[str, Any], settings: Settings) -> Caller:
    user_id: object = None
    for name in settings.auth_user_claims:
        for alias in _CLAIM_ALIASES.get(name, (name,)):
            if claims.get(alias):
                user_id = claims[alias]
                break
        if user_id:
            break
    if not isinstance(user_id, str):
        raise Unauthenticated("the token does not name a user")
    try:
        validate_user_id(user_id, field="it")
    except BadRequest as exc:  # the reason, never the claim's value
        raise Unauthenticated(f"the token's user claim is not usable: {exc.message}") from None
    if settings.auth_required_scopes:
        granted = set(claim_strings(claims, "scp", split=True))
        granted.update(claim_strings(claims, "scope", split=True))
        granted.update(claim_strings(claims, _SCOPE_CLAIM_URI, split=True))
        for scope in settings.auth_required_scopes:
            if scope not in granted:
                # Microsoft: a web API verifies the delegated scope and answers 403 when it
                # is missing (Microsoft.Identity.Web RequiredScopeAttribute).
                raise Forbidden(f"the token does not carry the required scope '{scope}'")
    is_admin = settings.auth_admin_role in claim_strings(claims, settings.auth_roles_claim)
    return Caller(user_id=user_id, is_admin=is_admin)


def claim_strings(claims: Mapping[str, Any], name: str, *, split: bool = False) -> list[str]:
    """The strings in claim ``name``: its value if a string, the strings of a list.

    ``name`` is first looked up as one top-level claim, which covers names that contain
    dots and slashes (Auth0's namespaced ``https://example.com/roles``, Cognito's
    ``cognito:groups``); only when no such claim exists is it read as a dotted path into
    nested objects (Keycloak's ``realm_access.roles``). ``split`` splits strings on
    spaces (OAuth ``scope``/Entra ``scp``: ``"a b"``; Okta's ``scp`` is a list)."""
    value: Any = claims.get(name)
    if name not in claims and "." in name:
        value = claims
        for part in name.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    strings = [item for item in items if isinstance(item, str)]
    return [word for item in strings for word in item.split()] if split else strings
