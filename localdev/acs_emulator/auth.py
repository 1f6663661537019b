"""Request authentication like the ACS data plane: HMAC-SHA256 and (optionally) Entra Bearer.

HMAC string-to-sign::

    VERB \\n pathAndQuery \\n x-ms-date;host;x-ms-content-sha256

where pathAndQuery is the request target exactly as received on the wire and
host the Host header as received.  The body hash must be base64(sha256(body)).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import hmac
import json
import logging
import os
import ssl
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

import jwt

log = logging.getLogger("acs_emulator.auth")

MAX_CLOCK_SKEW = 15 * 60
SIGNED_HEADERS = "x-ms-date;host;x-ms-content-sha256"
ACS_AUDIENCES = ("https://communication.azure.com", "https://communication.azure.com/")
TEAMS_AUDIENCE = "https://auth.msft.communication.azure.com"
JWT_ALGORITHMS = ("RS256", "ES256")



def parse_conn(conn: str) -> tuple[str, str]:
    """(endpoint without trailing slash, access key) from an ACS connection string."""
    endpoint = key = ""
    for part in conn.split(";"):
        k, _, v = part.partition("=")
        if k.lower() == "endpoint":
            endpoint = v.rstrip("/")
        elif k.lower() == "accesskey":
            key = v
    return endpoint, key

class AuthError(Exception):
    """Authentication failed; the message says why (returned as innererror)."""


class HmacAuth:
    def __init__(self, access_key_b64: str):
        self._key = base64.b64decode(access_key_b64)
        self._date_cache: dict[str, float] = {}

    def _parse_date(self, value: str) -> float:
        cached = self._date_cache.get(value)
        if cached is not None:
            return cached
        try:
            ts = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError) as exc:
            raise AuthError("x-ms-date is not an RFC 1123 date") from exc
        if len(self._date_cache) > 256:
            self._date_cache.clear()
        self._date_cache[value] = ts
        return ts

    def verify(
        self,
        method: str,
        path_and_query: str,
        headers: Mapping[str, str],
        body: bytes,
        authorization: str,
        now: float,
    ) -> None:
        # "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=<b64>"
        rest = authorization[12:]
        signed_headers = signature = None
        for part in rest.split("&"):
            name, _, value = part.partition("=")
            lname = name.strip().lower()
            if lname == "signedheaders":
                signed_headers = value.strip()
            elif lname == "signature":
                signature = value.strip()
        if signed_headers is None or signature is None:
            raise AuthError("Authorization header must carry SignedHeaders and Signature")
        if signed_headers.lower() != SIGNED_HEADERS:
            raise AuthError(f"SignedHeaders must be {SIGNED_HEADERS}")
        date = headers.get("x-ms-date")
        if not date:
            raise AuthError("x-ms-date header is missing")
        if abs(now - self._parse_date(date)) > MAX_CLOCK_SKEW:
            raise AuthError("x-ms-date is more than 15 minutes away from the server time")
        host = headers.get("Host")
        if not host:
            raise AuthError("Host header is missing")
        content_hash = headers.get("x-ms-content-sha256")
        if not content_hash:
            raise AuthError("x-ms-content-sha256 header is missing")
        actual_hash = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
        if not hmac.compare_digest(content_hash, actual_hash):
            raise AuthError("x-ms-content-sha256 does not match the request body")
        string_to_sign = f"{method}\n{path_and_query}\n{date};{host};{content_hash}"
        expected = base64.b64encode(
            hmac.new(self._key, string_to_sign.encode("utf-8"), hashlib.sha256).digest()
        ).decode("ascii")
        if not hmac.compare_digest(signature, expected):
            raise AuthError("The request signature does not match the access key")


class JwksVerifier:
    """Verifies RS256/ES256 JWTs against a JWKS URI (fetched, cached, refetched on unknown kid)."""

    def __init__(self, jwks_uri: str, cafiles: Sequence[str | os.PathLike[str]] = ()):
        """``cafiles``: extra CA bundles trusted for an https JWKS URI (besides the defaults)."""
        self.jwks_uri = jwks_uri
        self._cafiles = [os.fspath(f) for f in cafiles if os.path.exists(f)]
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._version = 0
        self._lock = asyncio.Lock()

    def _fetch_sync(self) -> dict[str, Any]:
        ctx = ssl.create_default_context()
        for extra in self._cafiles:
            ctx.load_verify_locations(cafile=extra)
        handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPSHandler(context=ctx)]
        host = urllib.parse.urlsplit(self.jwks_uri).hostname or ""
        if host in ("localhost", "127.0.0.1", "::1"):
            handlers.append(urllib.request.ProxyHandler({}))  # local JWKS: bypass proxies
        opener = urllib.request.build_opener(*handlers)
        with opener.open(self.jwks_uri, timeout=10) as resp:
            data = json.loads(resp.read())
        if not isinstance(data, dict):
            raise ValueError("JWKS is not an object")
        return data

    async def _refresh(self, seen_version: int) -> None:
        async with self._lock:
            if self._version != seen_version:
                return  # somebody else refreshed while we waited
            try:
                data = await asyncio.get_running_loop().run_in_executor(None, self._fetch_sync)
            except Exception as exc:  # network, JSON...
                log.warning("fetching JWKS from %s failed: %s", self.jwks_uri, exc)
                return
            keys: dict[str | None, jwt.PyJWK] = {}
            for entry in data.get("keys") or []:
                if not isinstance(entry, dict):
                    continue
                try:
                    k = jwt.PyJWK(entry)
                except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                    continue
                keys[entry.get("kid")] = k
            self._keys = keys
            self._version += 1

    async def _key_for(self, kid: str | None) -> jwt.PyJWK | None:
        if kid not in self._keys:
            await self._refresh(self._version)
        if kid is None and kid not in self._keys and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def verify(self, token: str, audiences: tuple[str, ...] | str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"token is not a JWT: {exc}") from exc
        alg = header.get("alg")
        if alg not in JWT_ALGORITHMS:
            raise AuthError(f"token algorithm {alg!r} is not accepted (RS256, ES256)")
        key = await self._key_for(header.get("kid"))
        if key is None:
            raise AuthError("token signing key is not in the trusted JWKS")
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=list(audiences) if isinstance(audiences, tuple) else audiences,
                options={"require": ["exp", "aud"], "verify_iss": False},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise AuthError(f"token rejected: {exc}") from exc
        if not isinstance(claims, dict):
            raise AuthError("token claims are not an object")
        return claims
