"""The local issuer's HTTP server (aiohttp): OIDC discovery, JWKS, App Service MI endpoint.

Plain HTTP, loopback only. Development tool: it hands out tokens to anyone who can reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import cors as _cors
from .keys import (
    DEFAULT_AUDIENCE,
    ISSUER_FILE,
    SUPPORTED_ALGS,
    IssuerKeys,
    write_json_atomic,
)
from .oidc import CODE_LIFETIME_SECONDS, OidcProvider

PublicClients = Mapping[str, Sequence[str]]

MSI_PATH = "/msi/token"
JWKS_PATH = "/jwks"
JWKS_WELL_KNOWN_PATH = "/.well-known/jwks.json"
DISCOVERY_PATH = "/.well-known/openid-configuration"
TOKEN_PATH = "/token"
AUTHORIZE_PATH = "/authorize"
MSI_API_VERSION = "2019-08-01"
STAT_NAMES = ("discoveryRequests", "jwksRequests", "msiRequests", "tokenRequests")


def check_loopback(host: str) -> None:
    """Refuse anything but a loopback address: this server mints tokens for anyone."""
    if host == "localhost":
        return
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"refusing to listen on {host!r}: the local issuer is loopback-only")


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass
class IssuerState:
    """Per-server state shared by the handlers."""

    keys: IssuerKeys
    issuer: str
    audience: str
    port: int
    oidc: OidcProvider
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAT_NAMES, 0))

    @property
    def jwks_uri(self) -> str:
        return self.issuer + JWKS_PATH

    @property
    def identity_endpoint(self) -> str:
        return self.issuer + MSI_PATH

    def info(self) -> dict[str, Any]:
        """The content of DIR/issuer.json."""
        return {
            "issuer": self.issuer,
            "jwksUri": self.jwks_uri,
            "audience": self.audience,
            "port": self.port,
            "pid": os.getpid(),
            "identityEndpoint": self.identity_endpoint,
            "identityHeader": self.keys.identity_header,
            "tenantId": self.keys.tenant_id,
            "tokenEndpoint": self.issuer + TOKEN_PATH,
            "discoveryUri": self.issuer + DISCOVERY_PATH,
            "authorizationEndpoint": self.issuer + AUTHORIZE_PATH,
            "publicClients": self.oidc.registrations(),
        }


STATE_KEY = web.AppKey("issuer_state", IssuerState)
CODE_GRANT_KEY = web.RequestKey("issuer_code_grant", bool)  # /token used authorization_code

# Read-only metadata a SPA needs before and after sign-in; never the admin, MSI or stats routes.
_CORS_METADATA_PATHS = frozenset({DISCOVERY_PATH, JWKS_PATH, JWKS_WELL_KNOWN_PATH})


def _cors_applies(request: web.Request) -> bool:
    """Which requests the SPA origins may read: discovery, JWKS, and ``/token`` only for the
    sign-in grant (``authorization_code``). The client-credentials grant mints a token for any
    ``sub`` with any role, the MSI endpoint a managed identity token, and ``/_issuer/*`` rotates
    keys and shows counters: a page on a SPA origin must not read any of them. A preflight to
    ``/token`` cannot show its grant (no body), so it is answered; the actual response then
    carries CORS headers only when the handler marked it as the code grant."""
    if request.path in _CORS_METADATA_PATHS:
        return True
    if request.path == TOKEN_PATH:
        return _cors.is_preflight(request) or bool(request.get(CODE_GRANT_KEY, False))
    return False


def _error(status: int, message: str, error: str = "invalid_request") -> web.Response:
    # statusCode/message is what App Service sends (and MSAL reports); error/error_description is
    # the OAuth shape.
    return web.json_response(
        {"statusCode": status, "message": message, "error": error, "error_description": message},
        status=status,
    )


async def discovery(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.stats["discoveryRequests"] += 1
    iss = state.issuer
    return web.json_response(
        {
            "issuer": iss,
            "jwks_uri": state.jwks_uri,
            "authorization_endpoint": iss + AUTHORIZE_PATH,
            "token_endpoint": iss + TOKEN_PATH,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": list(SUPPORTED_ALGS),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "none"],
            "grant_types_supported": ["authorization_code", "client_credentials"],
            "scopes_supported": ["openid", "profile"],
            "claims_supported": [
                "iss", "aud", "sub", "oid", "tid", "iat", "nbf", "exp", "roles", "scp", "azp",
                "nonce", "name", "preferred_username",
            ],
        }
    )


async def jwks(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.stats["jwksRequests"] += 1
    return web.json_response(state.keys.jwks())


async def msi_token(request: web.Request) -> web.Response:
    """App Service managed identity protocol, api-version 2019-08-01."""
    state = request.app[STATE_KEY]
    state.stats["msiRequests"] += 1
    supplied = request.headers.get("X-IDENTITY-HEADER")
    if not supplied:
        return _error(400, "X-IDENTITY-HEADER header is missing")
    if not hmac.compare_digest(supplied.encode(), state.keys.identity_header.encode()):
        return _error(401, "X-IDENTITY-HEADER does not match IDENTITY_HEADER", "unauthorized")
    q = request.query
    api_version = q.get("api-version")
    if api_version != MSI_API_VERSION:
        return _error(400, f"api-version must be {MSI_API_VERSION}, got {api_version!r}")
    resource = q.get("resource")
    if not resource:
        return _error(400, "resource query parameter is required")
    object_id = q.get("principal_id") or q.get("object_id")
    mi_res_id = q.get("mi_res_id") or q.get("msi_res_id")
    client_id = q.get("client_id")
    if sum(1 for sel in (client_id, object_id, mi_res_id) if sel) > 1:
        return _error(400, "only one of client_id, mi_res_id, principal_id/object_id may be given")
    body = state.keys.mint_managed_identity(
        resource, client_id=client_id, object_id=object_id, mi_res_id=mi_res_id
    )
    return web.json_response(body)


async def token(request: web.Request) -> web.StreamResponse:
    """Token endpoint: ``authorization_code`` (public clients with PKCE, see oidc.py) and a
    minimal client-credentials grant (no client authentication: dev only).


    Form: grant_type=client_credentials, client_id, [scope] (first scope, "/.default" stripped;
    default the server audience), [sub] (default client_id), [roles] (space-separated).
    """
    state = request.app[STATE_KEY]
    state.stats["tokenRequests"] += 1
    form = await request.post()
    if form.get("grant_type") == "authorization_code":
        request[CODE_GRANT_KEY] = True  # the only /token answer a SPA origin may read
        return await state.oidc.token(request, form)
    if form.get("grant_type") != "client_credentials":
        return _error(
            400,
            "grant_type must be authorization_code or client_credentials",
            "unsupported_grant_type",
        )
    client_id = str(form.get("client_id") or "")
    if not client_id:
        return _error(400, "client_id is required", "invalid_client")
    scopes = str(form.get("scope") or "").split()
    audience = scopes[0] if scopes else state.audience
    if audience.endswith("/.default"):
        audience = audience[: -len("/.default")]
    roles = str(form.get("roles") or "").split()
    sub = str(form.get("sub") or client_id)
    minutes = 60
    access_token = state.keys.mint(
        sub=sub,
        issuer=state.issuer,
        audience=audience,
        roles=roles,
        minutes=minutes,
        extra_claims={"azp": client_id, "appid": client_id, "idtyp": "app"},
    )
    return web.json_response(
        {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": minutes * 60,
            "ext_expires_in": minutes * 60,
        }
    )


async def authorize(request: web.Request) -> web.StreamResponse:
    return await request.app[STATE_KEY].oidc.authorize(request)


async def stats(request: web.Request) -> web.Response:
    return web.json_response(dict(request.app[STATE_KEY].stats))


async def reset_stats(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    for name in STAT_NAMES:
        state.stats[name] = 0
    return web.json_response(dict(state.stats))


async def rotate(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    alg = request.query.get("alg", "RS256")
    if alg not in SUPPORTED_ALGS:
        return _error(400, f"alg must be one of {SUPPORTED_ALGS}")
    kid = await asyncio.get_running_loop().run_in_executor(None, state.keys.rotate, alg)
    return web.json_response({"kid": kid, "alg": alg, "jwks": state.keys.jwks()})


async def info(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].info())


def make_app(state: IssuerState) -> web.Application:
    app = web.Application()
    app[STATE_KEY] = state
    # The SPAs' origins may read discovery, JWKS and the code grant at /token (Entra allows
    # cross-origin token redemption for redirect URIs of the "Single-page application"
    # platform); nothing else (see _cors_applies).
    _cors.install(app, state.oidc.cors_policy(), _cors_applies)
    app.router.add_get(DISCOVERY_PATH, discovery)
    app.router.add_get(JWKS_PATH, jwks)
    app.router.add_get(JWKS_WELL_KNOWN_PATH, jwks)
    app.router.add_get(MSI_PATH, msi_token)
    app.router.add_post(TOKEN_PATH, token)
    app.router.add_get(AUTHORIZE_PATH, authorize)
    app.router.add_post(AUTHORIZE_PATH, authorize)
    app.router.add_get("/_issuer/stats", stats)
    app.router.add_post("/_issuer/stats/reset", reset_stats)
    app.router.add_post("/_issuer/rotate", rotate)
    app.router.add_get("/_issuer/info", info)
    return app


def bind(host: str, port: int) -> socket.socket:
    check_loopback(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def start_server(
    data_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
    audience: str = DEFAULT_AUDIENCE,
    write_issuer_json: bool = True,
    public_clients: PublicClients | None = None,
    code_lifetime: float = CODE_LIFETIME_SECONDS,
) -> tuple[web.AppRunner, IssuerState]:
    """Bind, start serving, then (when ready) write DIR/issuer.json atomically.

    ``public_clients``: ``{client_id: [redirect_uri, ...]}`` allowed to sign users in with the
    authorization code flow (see oidc.py); ``code_lifetime``: seconds an authorization code
    stays redeemable.
    """
    keys = await asyncio.get_running_loop().run_in_executor(
        None, IssuerKeys.load_or_create, data_dir
    )
    sock = bind(host, port)
    actual_port = sock.getsockname()[1]
    issuer = f"http://{url_host(host)}:{actual_port}"
    try:
        oidc = OidcProvider.create(keys, issuer, audience, public_clients, code_lifetime)
    except ValueError:
        sock.close()
        raise
    state = IssuerState(
        keys=keys, issuer=issuer, audience=audience, port=actual_port, oidc=oidc
    )
    runner = web.AppRunner(make_app(state), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, sock, shutdown_timeout=1.0)
    await site.start()
    if write_issuer_json:
        write_json_atomic(keys.data_dir / ISSUER_FILE, state.info())
    return runner, state


async def serve(
    data_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
    audience: str = DEFAULT_AUDIENCE,
    on_ready: Callable[[IssuerState], None] | None = None,
    public_clients: PublicClients | None = None,
) -> None:
    """Run until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    runner, state = await start_server(
        data_dir, host, port, audience, public_clients=public_clients
    )
    try:
        if on_ready is not None:
            on_ready(state)
        await stop.wait()
    finally:
        await runner.cleanup()


def serve_forever(
    data_dir: str,
    host: str,
    port: int,
    audience: str,
    public_clients: PublicClients | None = None,
) -> int:
    def ready(state: IssuerState) -> None:
        print(state.issuer, flush=True)

    try:
        asyncio.run(
            serve(data_dir, host, port, audience, on_ready=ready, public_clients=public_clients)
        )
    except KeyboardInterrupt:  # pragma: no cover - signal handler normally catches it
        pass
    except (OSError, ValueError) as exc:
        print(f"issuer: {exc}", file=sys.stderr)
        return 1
    return 0


class _ServerThread(threading.Thread):
    def __init__(
        self,
        data_dir: Path,
        host: str,
        port: int,
        audience: str,
        write_issuer_json: bool,
        public_clients: PublicClients | None = None,
        code_lifetime: float = CODE_LIFETIME_SECONDS,
    ) -> None:
        super().__init__(name="local-issuer", daemon=True)
        self._args = (data_dir, host, port, audience, write_issuer_json)
        self._oidc_args = (public_clients, code_lifetime)
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.state: IssuerState | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the starting thread
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        public_clients, code_lifetime = self._oidc_args
        runner, self.state = await start_server(
            *self._args, public_clients=public_clients, code_lifetime=code_lifetime
        )
        try:
            self.ready.set()
            await self._stop_event.wait()
        finally:
            await runner.cleanup()

    def request_stop(self) -> None:
        if self.loop is not None and self._stop_event is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._stop_event.set)
