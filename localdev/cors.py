"""CORS as the Functions host does it: platform configuration, not app code.

Used by localdev.host (``Host.CORS`` / ``--cors``) and by the local issuer (the origins of its
registered SPA redirect URIs, as Entra ID allows cross-origin token redemption for SPAs).

Core Tools turns ``Host.CORS`` / ``--cors`` into ASP.NET Core's CORS middleware with
``WithOrigins(origins).AllowAnyHeader().AllowAnyMethod()`` (plus ``AllowCredentials()`` for
``Host.CORSCredentials`` / ``--cors-credentials``); see azure-functions-core-tools
``src/Azure.Functions.Cli/Actions/HostActions/Startup.cs``. This module reproduces what that
middleware sends (dotnet/aspnetcore ``src/Middleware/CORS/src/Infrastructure/CorsService.cs``
and ``CorsMiddleware.cs``):

* a preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) never reaches
  a function: 204, with the CORS headers only when the origin is allowed;
* an allowed origin's preflight gets ``Access-Control-Allow-Origin`` (the origin itself, or
  ``*`` when any origin is allowed without credentials), the requested method and headers
  echoed in ``-Allow-Methods`` / ``-Allow-Headers`` (AllowAnyMethod / AllowAnyHeader);
* actual responses to an allowed origin carry ``Access-Control-Allow-Origin`` (and
  ``-Allow-Credentials: true`` when enabled); no ``Access-Control-Expose-Headers`` is added,
  because neither Core Tools nor the Azure platform configure any (see docs/deploy.md);
* a disallowed origin gets no CORS header at all (the server "does not participate").

Two deliberate additions over ASP.NET Core: ``Access-Control-Max-Age`` on preflights (the
middleware sends none unless a policy sets it) and ``Vary: Origin`` on every response whose
``Access-Control-Allow-Origin`` echoes the origin (ASP.NET Core only adds it when more than
one origin is configured), so that a shared cache never serves one origin's answer to another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = ["CorsPolicy", "apply_cors", "normalise_origin", "parse_cors", "preflight_response"]

PREFLIGHT_MAX_AGE = 300  # seconds; Chromium caps at 7200, so short keeps config edits visible


@dataclass(frozen=True)
class CorsPolicy:
    """Allowed origins (normalised ``scheme://host[:port]``) or any origin, and credentials."""

    origins: frozenset[str]
    any_origin: bool = False
    credentials: bool = False
    max_age: int = PREFLIGHT_MAX_AGE

    def allows(self, origin: str) -> bool:
        return bool(origin) and (self.any_origin or origin in self.origins)

    def allow_origin_value(self, origin: str) -> str:
        """``*`` only for any origin without credentials (browsers reject ``*`` with them)."""
        return "*" if self.any_origin and not self.credentials else origin


_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(origin: str, *, keep_default_port: bool = False) -> str:
    """``scheme://host[:port]`` with scheme and host lower-cased, as a browser sends it in
    ``Origin``: an explicit default port (``:80`` for http, ``:443`` for https) is dropped
    (RFC 6454 §6.1; the WHATWG URL serialiser omits a default port), so ``http://localhost:80``
    is ``http://localhost``. ``keep_default_port`` keeps it as written, which is what ASP.NET
    Core's ``CorsPolicyBuilder.GetNormalizedOrigin`` does for a non-IDN origin (it only lower-
    cases; dotnet/aspnetcore src/Middleware/CORS/src/Infrastructure/CorsPolicyBuilder.cs)."""
    parts = urlsplit(origin)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ValueError(
            f"CORS origin {origin!r} is not an origin: expected scheme://host[:port], "
            "for example http://localhost:5173"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"CORS origin {origin!r} has an invalid port") from exc
    if port == _DEFAULT_PORTS[parts.scheme] and not keep_default_port:
        port = None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def parse_cors(value: str | None, credentials: bool = False) -> CorsPolicy | None:
    """``Host.CORS`` / ``--cors``: a comma list of origins or ``*``; empty or None: no CORS.

    ``*`` with credentials is refused: ASP.NET Core throws on that policy
    (``Resources.InsecureConfiguration``), and browsers reject ``*`` with credentials anyway.
    """
    items = [item.strip() for item in (value or "").split(",") if item.strip()]
    if not items:
        return None
    any_origin = "*" in items
    if any_origin and credentials:
        raise ValueError(
            "CORS '*' cannot be combined with credentials (Host.CORSCredentials / "
            "--cors-credentials): list the origins instead"
        )
    # Host.CORS goes to ASP.NET Core's WithOrigins, which keeps an explicit default port.
    origins = frozenset(
        normalise_origin(item, keep_default_port=True) for item in items if item != "*"
    )
    return CorsPolicy(origins=origins, any_origin=any_origin, credentials=credentials)


def is_preflight(request: web.Request) -> bool:
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


def _add_vary_origin(response: web.StreamResponse) -> None:
    existing = [v.lower() for v in _split_list(response.headers.getall("Vary", []))]
    if "origin" not in existing and "*" not in existing:
        response.headers.add("Vary", "Origin")


def _split_list(values: list[str]) -> list[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def preflight_response(policy: CorsPolicy, request: web.Request) -> web.Response:
    """The 204 the host answers every preflight with (the function never sees it)."""
    response = web.Response(status=204)
    origin = request.headers.get("Origin", "")
    if not policy.allows(origin):
        return response
    allow_origin = policy.allow_origin_value(origin)
    response.headers["Access-Control-Allow-Origin"] = allow_origin
    if policy.credentials:
        response.headers["Access-Control-Allow-Credentials"] = "true"
    requested_headers = _split_list(request.headers.getall("Access-Control-Request-Headers", []))
    if requested_headers:
        response.headers["Access-Control-Allow-Headers"] = ",".join(requested_headers)
    method = request.headers.get("Access-Control-Request-Method", "").strip()
    if method:
        response.headers["Access-Control-Allow-Methods"] = method
    response.headers["Access-Control-Max-Age"] = str(policy.max_age)
    if allow_origin != "*":
        _add_vary_origin(response)
    return response


def apply_cors(policy: CorsPolicy, request: web.Request, response: web.StreamResponse) -> None:
    """Headers for an actual (non-preflight) response; nothing for a disallowed origin."""
    origin = request.headers.get("Origin", "")
    if not policy.allows(origin) or is_preflight(request):
        return
    allow_origin = policy.allow_origin_value(origin)
    response.headers["Access-Control-Allow-Origin"] = allow_origin
    if policy.credentials:
        response.headers["Access-Control-Allow-Credentials"] = "true"
    if allow_origin != "*":
        _add_vary_origin(response)


CorsFilter = Callable[[web.Request], bool]


def install(
    app: web.Application, policy: CorsPolicy | None, applies: CorsFilter | None = None
) -> None:
    """Answer preflights before routing and decorate every response (as UseCors does).

    ``applies``: when given, only requests it accepts take part in CORS (preflight and actual
    response; it runs before the handler for a preflight and after it for an actual response,
    so it may read what the handler left on the request). Everything else gets no CORS header,
    and its preflights go on to routing like any OPTIONS request.
    """
    if policy is None:
        return

    def take_part(request: web.Request) -> bool:
        return applies is None or applies(request)

    @web.middleware
    async def cors_preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_preflight(request) and take_part(request):
            return preflight_response(policy, request)
        return await handler(request)

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        if take_part(request):
            apply_cors(policy, request, response)

    app.middlewares.append(cors_preflight)
    app.on_response_prepare.append(on_prepare)
