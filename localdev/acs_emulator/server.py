"""The ACS Identity emulator: an aiohttp low-level HTTPS server.

Hot path (issue token): route on the raw request target, check api-version,
verify HMAC, count, (latency, faults), throttle, sign an RS256 JWT (signatures of identical
payloads are cached).  No per-request key parsing, no router, no middleware, no access log.

Where the real service's answer is recorded, the emulator copies it and the code cites the
recording; docs/emulator.md lists what is copied and what is only plausible.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from localdev import tls
from localdev.files import write_json_atomic

from .auth import ACS_AUDIENCES, TEAMS_AUDIENCE, AuthError, HmacAuth, JwksVerifier
from .state import State
from .throttle import WINDOW_SECONDS, Throttle
from .tokens import (
    TICKS_PER_SECOND,
    SigningMaterial,
    TokenError,
    TokenSigner,
    iso_expires_on,
    load_or_create_access_key,
    load_or_create_resource_id,
    load_or_create_signing,
)
from .versions import IDENTITY_HEADER, RULES, TEAMS_HEADER, VersionRules, supported

log = logging.getLogger("acs_emulator")

DEFAULT_MINUTES = 1440
MIN_MINUTES, MAX_MINUTES = 60, 1440
TOKEN_SCP = 1792

OPERATIONS = (
    "createIdentity",
    "issueAccessToken",
    "revokeAccessTokens",
    "deleteIdentity",
    "exchangeTeamsUserAccessToken",
)

# Success bodies carry a charset, error bodies do not (every recorded error response, e.g.
# Azure/azure-sdk-for-python sdk/communication/azure-communication-identity/tests/recordings/
# test_communication_identity_client.pyTestClienttest_get_token_with_no_scopes.json).
JSON_CT = "application/json; charset=utf-8"
ERROR_CT = "application/json"
#: Request-mapping key holding the api-supported-versions header of the routed operation.
_ADVERTISE = "acs_advertise"
_TEAMS_OP = "exchangeTeamsUserAccessToken"
# Recorded Teams exchange answers (Azure/azure-sdk-for-python sdk/communication/
# azure-communication-identity/tests/recordings/test_communication_identity_client.pyTestClient
# test_get_token_for_teams_user_with_*.json): an invalid, expired or empty token is a 401 that
# is checked before the other fields; a wrong appId/userId is a 400 naming the field.
TEAMS_INVALID_TOKEN = ("InvalidAccessToken", "Provided access token is not valid.")
TEAMS_WRONG_APP = "AAD application is not the expected one."
TEAMS_WRONG_USER = "Provided AAD token issued for unexpected user."
#: Scopes an Entra token must carry for the exchange (short names as Entra writes them in scp).
TEAMS_REQUIRED_SCOPES = ("Teams.ManageCalls", "Teams.ManageChats")


@dataclass
class Config:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    access_key: str | None = None
    resource_id: str | None = None
    state_file: Path | None = None
    rate_scale: float = 1.0
    throttle_window: float = WINDOW_SECONDS
    trusted_jwks_uri: str | None = None
    jwks_cafile: str | None = None
    extra_hosts: tuple[str, ...] = field(default_factory=tuple)
    #: Seconds before a revoke takes effect (Azure: "up to 15 minutes"); 0 = immediately.
    revoke_delay: float = 0.0
    #: Fixed number of fractional digits in expiresOn (None: like .NET, up to 7, trimmed).
    expires_on_digits: int | None = None


class _Fault:
    __slots__ = ("mode", "operation", "remaining", "retry_after", "status")

    def __init__(
        self,
        operation: str,
        status: int | None,
        mode: str | None,
        count: int,
        retry_after: int | None,
    ):
        self.operation = operation
        self.status = status
        self.mode = mode
        self.remaining = count
        self.retry_after = retry_after

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"operation": self.operation, "count": self.remaining}
        if self.mode:
            d["mode"] = self.mode
        else:
            d["status"] = self.status
            if self.retry_after is not None:
                d["retryAfterSeconds"] = self.retry_after
        return d


class _Done(Exception):
    """Raised inside the pipeline to answer with a prepared response."""

    def __init__(self, response: web.StreamResponse):
        super().__init__()
        self.response = response


def _error_body(
    code: str, message: str, target: str | None = None, inner: str | None = None
) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message}
    if target is not None:
        err["target"] = target
    if inner is not None:
        err["innererror"] = {"code": code, "message": inner}
    return json.dumps({"error": err}, separators=(",", ":")).encode()


_RULES_2023_10_01 = RULES["2023-10-01"]


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def _ms_cv() -> str:
    return base64.b64encode(os.urandom(16))[:22].decode("ascii") + ".0"


def _abort_connection(request: web.BaseRequest) -> None:
    """Drop the TCP connection without a response (RST where possible)."""
    tr = request.transport
    if tr is None:
        return
    sock = tr.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    tr.abort()


class Emulator:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.access_key = load_or_create_access_key(cfg.data_dir, cfg.access_key)
        self.resource_id = load_or_create_resource_id(cfg.data_dir, cfg.resource_id)
        material: SigningMaterial = load_or_create_signing(cfg.data_dir)
        self.signer = TokenSigner(material)
        self.hmac = HmacAuth(self.access_key)
        self.jwks: JwksVerifier | None = None
        if cfg.trusted_jwks_uri:
            cafiles: list[str | os.PathLike[str]] = [cfg.data_dir / tls.CA_CERT_NAME]
            if cfg.jwks_cafile:
                cafiles.append(cfg.jwks_cafile)
            self.jwks = JwksVerifier(cfg.trusted_jwks_uri, cafiles)
        self.state = State(self.resource_id, cfg.state_file)
        self.throttle = Throttle(cfg.rate_scale, cfg.throttle_window)
        self.latency = 0.0
        self.faults: list[_Fault] = []
        self._hangs: set[asyncio.Event] = set()
        self.revoke_delay = cfg.revoke_delay
        self.expires_on_digits = cfg.expires_on_digits
        self._reset_counters()

    # ------------------------------------------------------------------ counters
    def _reset_counters(self) -> None:
        self.requests = dict.fromkeys(OPERATIONS, 0)
        self.throttled = dict.fromkeys(OPERATIONS, 0)
        self.faulted = dict.fromkeys(OPERATIONS, 0)
        self.unauthenticated = 0
        self.connections = 0
        self.identities_created = 0
        self.identities_deleted = 0
        self.tokens_issued = 0

    def connection_made(self) -> None:
        self.connections += 1

    # ------------------------------------------------------------------ responses
    @staticmethod
    def _headers(
        request: web.BaseRequest, content_type: str | None, advertise: bool = True
    ) -> dict[str, str]:
        """MS-CV, the routed operation's own api-supported-versions, echoed request id.

        The header is per operation (the Teams exchange advertises fewer versions) and is
        missing from 401s and from "field is required" 400s, as in the recordings.
        """
        h = {"MS-CV": _ms_cv()}
        if advertise:
            h["api-supported-versions"] = request.get(_ADVERTISE, IDENTITY_HEADER)
        if content_type is not None:
            h["Content-Type"] = content_type
        crid = request.headers.get("x-ms-client-request-id")
        if crid is not None:
            h["x-ms-client-request-id"] = crid
        return h

    def _json(self, request: web.BaseRequest, status: int, body: bytes) -> web.Response:
        return web.Response(status=status, body=body, headers=self._headers(request, JSON_CT))

    def _error(
        self,
        request: web.BaseRequest,
        status: int,
        code: str,
        message: str,
        target: str | None = None,
        inner: str | None = None,
        extra_headers: dict[str, str] | None = None,
        advertise: bool = True,
    ) -> web.Response:
        resp = web.Response(
            status=status,
            body=_error_body(code, message, target, inner),
            headers=self._headers(request, ERROR_CT, advertise and status != 401),
        )
        if extra_headers:
            resp.headers.update(extra_headers)
        return resp

    def _required(self, request: web.BaseRequest, name: str) -> _Done:
        """ASP.NET model validation, as recorded: ``Scopes: The Scopes field is required.``
        (...test_get_token_with_no_scopes.json, ...test_get_token_for_teams_user_with_invalid_
        client_id[empty_client_id-].json), target = the field, no api-supported-versions."""
        return _Done(
            self._error(
                request,
                400,
                "ValidationError",
                f"{name}: The {name} field is required.",
                target=name,
                advertise=False,
            )
        )

    def _no_content(self, request: web.BaseRequest) -> web.Response:
        return web.Response(status=204, headers=self._headers(request, None))

    # ------------------------------------------------------------------ entry point
    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        raw = request.raw_path
        path, _, query = raw.partition("?")
        if path.startswith("/_emulator/"):
            return await self._control(request, path)
        try:
            op, ident = self._route(request, path)
            if op == _TEAMS_OP:
                request[_ADVERTISE] = TEAMS_HEADER
            rules = self._api_version(request, query, op)
            body = await request.read()
            await self._authenticate(request, raw, body)
            self.requests[op] += 1
            if self.latency:
                await asyncio.sleep(self.latency)
            if self.faults:
                await self._apply_fault(request, op)
            retry_after = self.throttle.hit(op, time.monotonic())
            if retry_after is not None:
                self.throttled[op] += 1
                return self._error(
                    request,
                    429,
                    "TooManyRequests",
                    f"Rate limit exceeded for {op}: {self.throttle.limits[op]} requests per "
                    f"{self.throttle.window:g} seconds. Retry after {retry_after} seconds.",
                    extra_headers={"Retry-After": str(retry_after)},
                )
            if op == "issueAccessToken":
                return self._issue(request, ident, body, rules)
            if op == "createIdentity":
                return self._create(request, body, rules)
            if op == "revokeAccessTokens":
                return self._revoke(request, ident)
            if op == "deleteIdentity":
                return self._delete(request, ident)
            return await self._exchange(request, body)
        except _Done as done:
            return done.response
        except web.HTTPException:
            raise
        except Exception:
            log.exception("unexpected error handling %s %s", request.method, raw)
            return self._error(
                request, 500, "InternalServerError", "The emulator failed to process the request."
            )

    # ------------------------------------------------------------------ pipeline steps
    def _route(self, request: web.BaseRequest, path: str) -> tuple[str, str]:
        method = request.method
        lpath = path.lower()
        op: str | None = None
        ident = ""
        allowed = ""
        if lpath == "/identities":
            allowed = "POST"
            op = "createIdentity" if method == "POST" else None
        elif lpath.startswith("/identities/"):
            rest = path[12:]
            seg, sep, action = rest.partition("/")
            if seg:
                ident = urllib.parse.unquote(seg)
                if not sep:
                    allowed = "DELETE"
                    op = "deleteIdentity" if method == "DELETE" else None
                else:
                    laction = action.lower()
                    if laction == ":issueaccesstoken":
                        allowed = "POST"
                        op = "issueAccessToken" if method == "POST" else None
                    elif laction == ":revokeaccesstokens":
                        allowed = "POST"
                        op = "revokeAccessTokens" if method == "POST" else None
        elif lpath == "/teamsuser/:exchangeaccesstoken":
            allowed = "POST"
            op = "exchangeTeamsUserAccessToken" if method == "POST" else None
        if op is None:
            if allowed:
                resp = self._error(
                    request,
                    405,
                    "MethodNotAllowed",
                    f"The requested resource does not support http method '{method}'.",
                )
                resp.headers["Allow"] = allowed
                raise _Done(resp)
            raise _Done(
                self._error(
                    request,
                    404,
                    "NotFound",
                    f"No ACS Identity operation matches '{method} {path}'.",
                )
            )
        return op, ident

    def _api_version(self, request: web.BaseRequest, query: str, op: str) -> VersionRules:
        if query == "api-version=2023-10-01":
            return _RULES_2023_10_01
        version: str | None = None
        for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True):
            if k.lower() == "api-version":
                version = v
                break
        if version is None or version == "":
            raise _Done(
                self._error(
                    request,
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                    target="api-version",
                )
            )
        teams = op == _TEAMS_OP
        if not supported(version, teams):
            raise _Done(
                self._error(
                    request,
                    400,
                    "UnsupportedApiVersion",
                    f"The HTTP resource that matches the request URI '{request.raw_path}' does not "
                    f"support the API version '{version}'. Supported versions: "
                    f"{TEAMS_HEADER if teams else IDENTITY_HEADER}.",
                    target="api-version",
                )
            )
        return RULES[version]

    async def _authenticate(self, request: web.BaseRequest, raw: str, body: bytes) -> None:
        authz = request.headers.get("Authorization", "")
        try:
            if authz.startswith("HMAC-SHA256 "):
                self.hmac.verify(request.method, raw, request.headers, body, authz, time.time())
                return
            if authz[:7].lower() == "bearer ":
                if self.jwks is None:
                    raise AuthError(
                        "Bearer tokens are not accepted: the emulator runs without "
                        "--trusted-jwks-uri"
                    )
                await self.jwks.verify(authz[7:].strip(), ACS_AUDIENCES)
                return
            raise AuthError("Authorization header is missing or not HMAC-SHA256/Bearer")
        except AuthError as exc:
            self.unauthenticated += 1
            raise _Done(
                self._error(
                    request, 401, "Denied", "Denied by the resource provider.", inner=str(exc)
                )
            ) from None

    async def _apply_fault(self, request: web.BaseRequest, op: str) -> None:
        fault = None
        for f in self.faults:
            if f.operation in ("*", op):
                fault = f
                break
        if fault is None:
            return
        fault.remaining -= 1
        if fault.remaining <= 0:
            self.faults.remove(fault)
        self.faulted[op] += 1
        if fault.mode == "reset":
            _abort_connection(request)
            raise _Done(web.Response(status=500))
        if fault.mode == "hang":
            await self._hang(request)
            _abort_connection(request)
            raise _Done(web.Response(status=500))
        status = fault.status or 500
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        elif status == 429:
            headers["Retry-After"] = "1"
        code, message = {
            429: ("TooManyRequests", "Too many requests (injected fault)."),
            500: ("InternalServerError", "An internal server error occurred (injected fault)."),
            503: ("ServiceUnavailable", "The service is unavailable (injected fault)."),
        }.get(status, ("InjectedFault", f"Injected fault with status {status}."))
        raise _Done(self._error(request, status, code, message, extra_headers=headers))

    async def _hang(self, request: web.BaseRequest) -> None:
        ev = asyncio.Event()
        self._hangs.add(ev)
        try:
            while not ev.is_set():
                tr = request.transport
                if tr is None or tr.is_closing():
                    return
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(ev.wait(), 0.1)
        finally:
            self._hangs.discard(ev)

    def release_hangs(self) -> None:
        for ev in list(self._hangs):
            ev.set()

    # ------------------------------------------------------------------ validation helpers
    def _parse_body(self, request: web.BaseRequest, body: bytes, required: bool) -> dict[str, Any]:
        if not body.strip():
            if required:
                raise _Done(
                    self._error(
                        request,
                        400,
                        "ValidationError",
                        "A request body is required.",
                        target="body",
                    )
                )
            return {}
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _Done(
                self._error(
                    request,
                    400,
                    "InvalidRequestBody",
                    "The request body is not valid JSON.",
                    target="body",
                )
            ) from None
        if data is None and not required:
            return {}
        if not isinstance(data, dict):
            raise _Done(
                self._error(
                    request,
                    400,
                    "InvalidRequestBody",
                    "The request body must be a JSON object.",
                    target="body",
                )
            )
        return data

    def _scopes(
        self, request: web.BaseRequest, value: Any, target: str, rules: VersionRules
    ) -> list[str]:
        if value is None:
            raise self._required(request, target)
        if not isinstance(value, list) or not value:
            # Real answer for a non-list or an empty list: not recorded (plausible only).
            raise _Done(
                self._error(
                    request,
                    400,
                    "ValidationError",
                    f"{target} must be a non-empty array of scopes: {rules.scope_list}.",
                    target=target,
                )
            )
        out: list[str] = []
        for s in value:
            if not isinstance(s, str) or s not in rules.scopes:
                # Per api-version scope lists from the specs; the message is not recorded.
                raise _Done(
                    self._error(
                        request,
                        400,
                        "ValidationError",
                        f"Scope '{s}' is invalid in api-version {rules.version}. Valid scopes "
                        f"are: {rules.scope_list}.",
                        target=target,
                    )
                )
            if s not in out:
                out.append(s)
        return out

    def _minutes(self, request: web.BaseRequest, value: Any, rules: VersionRules) -> int:
        """``expiresInMinutes`` from 2022-10-01 (older versions do not know it and ignore it).

        Azure/azure-sdk-for-python .../recordings/test_communication_identity_client.pyTestClient
        test_get_token_with_invalid_custom_expirations[max_invalid_mins-1441].json: 1441 on
        2022-10-01 is a 400 with this exact message and target.
        """
        if value is None or not rules.custom_expiry:
            return DEFAULT_MINUTES
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (isinstance(value, float) and not value.is_integer())
        ):
            raise _Done(
                self._error(
                    request,
                    400,
                    "ValidationError",
                    f"ExpiresInMinutes value {value} is invalid. Value must be an integer.",
                    target="ExpiresInMinutes",
                )
            )
        minutes = int(value)
        if not MIN_MINUTES <= minutes <= MAX_MINUTES:
            raise _Done(
                self._error(
                    request,
                    400,
                    "ValidationError",
                    f"ExpiresInMinutes value {minutes} is invalid. Value must be within the "
                    f"[{MIN_MINUTES}, {MAX_MINUTES}] interval.",
                    target="ExpiresInMinutes",
                )
            )
        return minutes

    def _not_found(self, request: web.BaseRequest, ident: str) -> _Done:
        return _Done(
            self._error(
                request,
                404,
                "IdentityNotFound",
                f"Identity with id '{ident}' was not found.",
                target="id",
            )
        )

    # ------------------------------------------------------------------ token issuance
    def _token(
        self, ident: str, scopes: list[str], exp_ticks: int, iat: int
    ) -> dict[str, str]:
        """Claims in the real token's order: skypeid, scp, csi, exp, acsScope, resourceId, iat."""
        claims = {
            "skypeid": ident[2:],
            "scp": TOKEN_SCP,
            "csi": str(iat),
            "exp": exp_ticks // TICKS_PER_SECOND,
            "acsScope": ",".join(scopes),
            "resourceId": self.resource_id,
            "iat": iat,
        }
        self.tokens_issued += 1
        return {
            "token": self.signer.sign(claims),
            "expiresOn": iso_expires_on(exp_ticks, self.expires_on_digits),
        }

    def _issue_for(self, request: web.BaseRequest, ident: str, scopes: list[str],
                   minutes: int) -> dict[str, str]:
        now_ns = time.time_ns()
        iat = self.state.issue_iat(ident, now_ns / 1e9)
        if iat is None:
            raise self._not_found(request, ident)
        exp_ticks = now_ns // 100 + minutes * 60 * TICKS_PER_SECOND
        return self._token(ident, scopes, exp_ticks, iat)

    # ------------------------------------------------------------------ operations
    def _create(self, request: web.BaseRequest, body: bytes, rules: VersionRules) -> web.Response:
        data = self._parse_body(request, body, required=False)
        if data.get("customId") is not None:
            raise _Done(
                self._error(
                    request,
                    400,
                    "EmulatorUnsupported",
                    "customId is not implemented by the ACS emulator."
                    if rules.custom_id
                    else f"customId does not exist in api-version {rules.version}.",
                    target="customId",
                )
            )
        # createTokenWithScopes null: 201 with the identity only (...test_create_user_and_token_
        # with_no_scopes.json).
        raw_scopes = data.get("createTokenWithScopes")
        scopes = (
            self._scopes(request, raw_scopes, "CreateTokenWithScopes", rules)
            if raw_scopes is not None
            else None
        )
        minutes = self._minutes(request, data.get("expiresInMinutes"), rules)
        ident = self.state.create()
        self.identities_created += 1
        result: dict[str, Any] = {"identity": {"id": ident}}
        if scopes:
            result["accessToken"] = self._issue_for(request, ident, scopes, minutes)
        return self._json(request, 201, json.dumps(result, separators=(",", ":")).encode())

    def _issue(
        self, request: web.BaseRequest, ident: str, body: bytes, rules: VersionRules
    ) -> web.Response:
        data = self._parse_body(request, body, required=True)
        scopes = self._scopes(request, data.get("scopes"), "Scopes", rules)
        minutes = self._minutes(request, data.get("expiresInMinutes"), rules)
        tok = self._issue_for(request, ident, scopes, minutes)
        return self._json(request, 200, json.dumps(tok, separators=(",", ":")).encode())

    def _revoke(self, request: web.BaseRequest, ident: str) -> web.Response:
        if not self.state.revoke(ident, time.time(), self.revoke_delay):
            raise self._not_found(request, ident)
        return self._no_content(request)

    def _delete(self, request: web.BaseRequest, ident: str) -> web.Response:
        if not self.state.delete(ident):
            raise self._not_found(request, ident)
        self.identities_deleted += 1
        return self._no_content(request)

    async def _exchange(self, request: web.BaseRequest, body: bytes) -> web.Response:
        """The Teams exchange, in the order the recordings show: the token first (401), then
        required fields, then GUID formats, then the token's appid/oid against appId/userId."""
        data = self._parse_body(request, body, required=True)
        claims = await self._teams_claims(request, data.get("token"))
        for name in ("appId", "userId"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise self._required(request, name[0].upper() + name[1:])
        app_id, user_id = data["appId"], data["userId"]
        for name, value in (("AppId", app_id), ("UserId", user_id)):
            if not _is_guid(value):
                # ...test_get_token_for_teams_user_with_invalid_client_id[invalid_client_id-
                # invalid].json / ..._invalid_user_object_id[invalid_user_object_id-invalid].json
                raise _Done(
                    self._error(
                        request,
                        400,
                        "ValidationError",
                        f"Provided {name} has invalid format.",
                        target=name[0].lower() + name[1:],
                    )
                )
        app = claims.get("appid", claims.get("azp"))
        oid = claims.get("oid")
        if not isinstance(app, str) or app.lower() != app_id.lower():
            # ...test_get_token_for_teams_user_with_wrong_client_id.json
            raise _Done(self._error(request, 400, "ValidationError", TEAMS_WRONG_APP, "appId"))
        if not isinstance(oid, str) or oid.lower() != user_id.lower():
            # ...test_get_token_for_teams_user_with_wrong_user_object_id.json
            raise _Done(self._error(request, 400, "ValidationError", TEAMS_WRONG_USER, "userId"))
        now_ns = time.time_ns()
        exp = min(float(claims["exp"]), now_ns / 1e9 + 24 * 3600)
        tok = self._token(
            f"8:orgid:{oid}", ["voip", "chat"], int(exp * TICKS_PER_SECOND),
            now_ns // 1_000_000_000,
        )
        return self._json(request, 200, json.dumps(tok, separators=(",", ":")).encode())

    async def _teams_claims(self, request: web.BaseRequest, token: Any) -> dict[str, Any]:
        """Claims of a valid Entra token of a Teams user, else the recorded 401.

        Valid: signed by a key of --trusted-jwks-uri, audience
        https://auth.msft.communication.azure.com, not expired, a tenant (``tid``) and both
        Teams.ManageCalls and Teams.ManageChats in ``scp`` (what the real service requires;
        its answer when they are missing is not recorded, the emulator uses the same 401).
        """
        invalid = _Done(self._error(request, 401, *TEAMS_INVALID_TOKEN))
        if not isinstance(token, str) or not token or self.jwks is None:
            raise invalid
        try:
            claims = await self.jwks.verify(token, TEAMS_AUDIENCE)
        except AuthError:
            raise invalid from None
        scp = claims.get("scp")
        granted = {s.rsplit("/", 1)[-1] for s in scp.split()} if isinstance(scp, str) else set()
        tid = claims.get("tid")
        if not all(s in granted for s in TEAMS_REQUIRED_SCOPES) or not (
            isinstance(tid, str) and _is_guid(tid)
        ):
            raise invalid
        return claims

    # ------------------------------------------------------------------ token validation
    def validate(self, token: str) -> dict[str, Any]:
        try:
            claims = self.signer.verify(token)
        except TokenError as exc:
            ident = None
            if exc.claims and isinstance(exc.claims.get("skypeid"), str):
                ident = "8:" + exc.claims["skypeid"]
            return {"valid": False, "reason": exc.reason, "identity": ident}
        skypeid = claims.get("skypeid")
        iat = claims.get("iat")
        if not isinstance(skypeid, str) or not isinstance(iat, int):
            return {"valid": False, "reason": "malformed", "identity": None}
        ident = "8:" + skypeid
        now = time.time()
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp <= now:
            return {"valid": False, "reason": "expired", "identity": ident}
        if ident.startswith("8:orgid:"):
            return {"valid": True, "reason": "ok", "identity": ident}
        revoked = self.state.revoked(ident, iat, now)
        if revoked is None:
            reason = "deleted" if ident in self.state.deleted else "unknown-identity"
            return {"valid": False, "reason": reason, "identity": ident}
        if revoked:
            return {"valid": False, "reason": "revoked", "identity": ident}
        return {"valid": True, "reason": "ok", "identity": ident}

    # ------------------------------------------------------------------ control plane
    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "identities": len(self.state.identities),
            "connections": self.connections,
            "identitiesCreated": self.identities_created,
            "identitiesDeleted": self.identities_deleted,
            "tokensIssued": self.tokens_issued,
            "throttled": dict(self.throttled),
            "faulted": dict(self.faulted),
            "unauthenticated": self.unauthenticated,
            "limits": dict(self.throttle.limits),
            "throttleWindowSeconds": self.throttle.window,
            "latencyMs": round(self.latency * 1000),
            "pendingFaults": [f.describe() for f in self.faults],
            "hanging": len(self._hangs),
            "config": self.config(),
        }

    def config(self) -> dict[str, Any]:
        return {
            "revokeDelaySeconds": self.revoke_delay,
            "expiresOnDigits": self.expires_on_digits,
        }

    def _set_config(self, data: dict[str, Any]) -> str | None:
        """Apply a /_emulator/config body; return an error message or None."""
        delay = data.get("revokeDelaySeconds", self.revoke_delay)
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
            return "revokeDelaySeconds must be a non-negative number"
        digits = data.get("expiresOnDigits", self.expires_on_digits)
        if digits is not None and (
            isinstance(digits, bool) or not isinstance(digits, int) or not 0 <= digits <= 7
        ):
            return "expiresOnDigits must be null or an integer 0..7"
        unknown = set(data) - {"revokeDelaySeconds", "expiresOnDigits"}
        if unknown:
            return f"unknown config keys: {', '.join(sorted(unknown))}"
        self.revoke_delay = float(delay)
        self.expires_on_digits = digits
        return None

    def reset(self) -> None:
        self.state.clear()
        self.throttle.reset()
        self.faults.clear()
        self.latency = 0.0
        self.release_hangs()
        self.revoke_delay = self.cfg.revoke_delay
        self.expires_on_digits = self.cfg.expires_on_digits
        self._reset_counters()

    def _set_faults(self, data: dict[str, Any]) -> str | None:
        """Apply a /_emulator/faults body; return an error message or None."""
        new: list[_Fault] = []
        raw = data.get("fault", data.get("faults"))
        items = raw if isinstance(raw, list) else ([raw] if raw is not None else [])
        for item in items:
            if not isinstance(item, dict):
                return "fault must be an object"
            operation = item.get("operation", "*")
            if operation != "*" and operation not in OPERATIONS:
                return f"unknown operation {operation!r}; use one of {', '.join(OPERATIONS)} or '*'"
            count = item.get("count", 1)
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                return "count must be a positive integer"
            mode = item.get("mode")
            status = item.get("status")
            retry_after = item.get("retryAfterSeconds")
            if mode is not None:
                if mode not in ("reset", "hang"):
                    return "mode must be 'reset' or 'hang'"
                new.append(_Fault(operation, None, mode, count, None))
                continue
            if status not in (429, 500, 503):
                return "status must be 429, 500 or 503 (or give mode reset|hang)"
            if retry_after is not None and (
                isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0
            ):
                return "retryAfterSeconds must be a non-negative integer"
            new.append(_Fault(operation, status, None, count, retry_after))
        latency = data.get("latencyMs")
        if latency is not None and (
            isinstance(latency, bool) or not isinstance(latency, (int, float)) or latency < 0
        ):
            return "latencyMs must be a non-negative number"
        if data.get("clear"):
            self.faults.clear()
            self.latency = 0.0
            self.release_hangs()
        if latency is not None:
            self.latency = float(latency) / 1000.0
        self.faults.extend(new)
        return None

    async def _control(self, request: web.BaseRequest, path: str) -> web.Response:
        name = path[len("/_emulator/") :].rstrip("/")
        method = request.method

        def ok(obj: Any, status: int = 200) -> web.Response:
            return web.Response(
                status=status,
                body=json.dumps(obj).encode(),
                headers={"Content-Type": JSON_CT, "Cache-Control": "no-store"},
            )

        def bad(message: str, status: int = 400) -> web.Response:
            return web.Response(
                status=status,
                body=_error_body("BadRequest" if status == 400 else "NotFound", message),
                headers={"Content-Type": JSON_CT},
            )

        async def body_obj() -> dict[str, Any] | None:
            raw = await request.read()
            if not raw.strip():
                return {}
            try:
                data = json.loads(raw)
            except ValueError:
                return None
            return data if isinstance(data, dict) else None

        if method == "GET":
            if name == "stats":
                return ok(self.stats())
            if name == "identities":
                return ok({"identities": list(self.state.identities)})
            if name == "jwks":
                return ok(self.signer.jwks)
            if name == "faults":
                return ok(
                    {
                        "latencyMs": round(self.latency * 1000),
                        "faults": [f.describe() for f in self.faults],
                    }
                )
            if name == "health":
                return ok({"status": "ok", "resourceId": self.resource_id})
            if name == "config":
                return ok(self.config())
        elif method == "POST" and name in ("validate", "faults", "reset", "config"):
            data = await body_obj()
            if data is None:
                return bad("body must be a JSON object")
            if name == "validate":
                token = data.get("token")
                if not isinstance(token, str):
                    return bad("token must be a string")
                return ok(self.validate(token))
            if name == "config":
                err = self._set_config(data)
                return bad(err) if err else ok(self.config())
            if name == "faults":
                err = self._set_faults(data)
                if err:
                    return bad(err)
                return ok(
                    {
                        "latencyMs": round(self.latency * 1000),
                        "faults": [f.describe() for f in self.faults],
                    }
                )
            self.reset()
            return ok({"reset": True})
        return bad(f"no control endpoint {method} {path}", 404)


# ---------------------------------------------------------------------- process
def _endpoint_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::", "*"):
        return "127.0.0.1"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


async def serve(cfg: Config, ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Run until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    data_dir = cfg.data_dir.resolve()
    cfg.data_dir = data_dir
    emu = Emulator(cfg)
    ca = tls.ensure_ca(data_dir)
    hosts = ["localhost", "127.0.0.1"]
    for h in (cfg.host, *cfg.extra_hosts):
        if h and h not in hosts and h not in ("0.0.0.0", "::", "*"):
            hosts.append(h)
    cert_path, key_path = tls.ensure_server_cert(data_dir, ca, name="acs-server", hosts=hosts)
    ssl_ctx = tls.server_ssl_context(cert_path, key_path)

    web_server = web.Server(emu.handle, access_log=None)

    def factory() -> asyncio.BaseProtocol:
        emu.connection_made()
        return web_server()

    server = await loop.create_server(
        factory,
        host=cfg.host,
        port=cfg.port,
        ssl=ssl_ctx,
        backlog=1024,
        reuse_address=True,
    )
    port = server.sockets[0].getsockname()[1]
    endpoint = f"https://{_endpoint_host(cfg.host)}:{port}/"
    conn = f"endpoint={endpoint};accesskey={emu.access_key}"
    info = {
        "endpoint": endpoint,
        "connectionString": conn,
        "caFile": str(ca.cert_path),
        "pid": os.getpid(),
        "port": port,
        "host": cfg.host,
        "resourceId": emu.resource_id,
        "accessKey": emu.access_key,
        "jwksUri": f"{endpoint}_emulator/jwks",
        "stateFile": str(cfg.state_file) if cfg.state_file else None,
    }
    acs_json = data_dir / "acs.json"
    write_json_atomic(acs_json, info)
    log.info("ACS identity emulator listening on %s (resource %s)", endpoint, emu.resource_id)
    print(conn, flush=True)
    if ready is not None:
        ready(info)

    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        server.close()
        emu.release_hangs()
        web_server.pre_shutdown()  # closes idle keep-alive connections right away
        await web_server.shutdown(2.0)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2.0)
        emu.state.flush()
        with contextlib.suppress(OSError, ValueError):
            if json.loads(acs_json.read_text()).get("pid") == os.getpid():
                acs_json.unlink()


def run(cfg: Config) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        import uvloop  # optional accelerator, used only if installed
    except ImportError:
        asyncio.run(serve(cfg))
    else:  # pragma: no cover - depends on the environment
        uvloop.run(serve(cfg))
    return 0
