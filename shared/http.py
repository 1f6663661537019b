"""The HTTP edge: request parsing, response rendering, and the one place where
``ServiceError`` becomes a response.

Kept light on purpose: function_app.py imports it at indexing time, so the SDKs, PyJWT
and the service are reached only through ``shared.runtime`` when a request arrives.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import azure.functions as func

from . import telemetry
from .errors import (
    BadRequest,
    ConfigurationError,
    Forbidden,
    PayloadTooLarge,
    ServiceError,
    Unauthenticated,
    UnsupportedMediaType,
)
from .keys import user_id_from_path
from .models import Caller, IssuedToken, Scope, TeamsTokenRequest, TokenRequest, UserRecord

if TYPE_CHECKING:
    from .service import TokenService

MAX_BODY_BYTES = 16 * 1024
_JSON_HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_log = logging.getLogger("acs_token_service.http")


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler returns; rendered to an HttpResponse by :func:`render`."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


class Call:
    """One HTTP invocation: the request, the authenticated caller, the service."""

    __slots__ = ("_caller", "_service", "request")

    def __init__(self, request: func.HttpRequest, caller: Caller | None,
                 service: TokenService | None) -> None:
        self.request = request
        self._caller = caller
        self._service = service

    @property
    def caller(self) -> Caller:
        assert self._caller is not None, "endpoint declared without auth"
        return self._caller

    @property
    def service(self) -> TokenService:
        assert self._service is not None, "endpoint declared without service"
        return self._service

    def json(self, allowed: frozenset[str]) -> dict[str, Any]:
        return parse_json_object(self.request, allowed)

    def user_id_param(self) -> str:
        """The ``{userId}`` route value, which must be the id's one canonical path form
        (:func:`shared.keys.path_form`); the value is taken exactly as the host decoded
        it and never decoded again."""
        return user_id_from_path(self.request.route_params.get("userId", ""))


Handler = Callable[[Call], Awaitable[Reply]]


Entry = Callable[..., Awaitable[func.HttpResponse]]


def endpoint(*, auth: bool = True, admin: bool = False,
             service: bool = True) -> Callable[[Handler], Entry]:
    """Wrap a handler into a Functions HTTP entry point.

    The entry point keeps the signature the worker expects (``req: func.HttpRequest``),
    authenticates (and checks the admin role) before the handler runs, and renders
    every outcome, errors included, as JSON. Nothing else in the app builds responses.
    """

    def wrap(handler: Handler) -> Entry:
        async def entry(req: func.HttpRequest,
                        context: func.Context | None = None) -> func.HttpResponse:
            scope = telemetry.invocation_id.set(getattr(context, "invocation_id", None))
            try:
                from . import runtime

                caller = await runtime.authenticate(req.headers) if auth else None
                if admin and not (caller and caller.is_admin):
                    raise Forbidden("this action needs the admin role")
                svc = await runtime.get_service() if service else None
                return render(await handler(Call(req, caller, svc)))
            except ServiceError as exc:
                return error_response(exc)
            except Exception:
                _log.exception("unhandled error in %s", handler.__name__)
                telemetry.metric("failures", endpoint=handler.__name__)
                return render(Reply(500, _error_body("internal_error", "internal error")))
            finally:
                telemetry.invocation_id.reset(scope)

        # The worker passes ``context`` by name and insists its annotation be exactly
        # func.Context; Python 3.10 would read the default as Optional[Context], so the
        # annotation is for type checkers only.
        del entry.__annotations__["context"]
        entry.__name__ = handler.__name__
        entry.__qualname__ = handler.__qualname__
        entry.__doc__ = handler.__doc__
        return entry

    return wrap


def render(reply: Reply) -> func.HttpResponse:
    headers = dict(_JSON_HEADERS)
    headers.update(reply.headers)
    if reply.body is None:
        headers.pop("Content-Type")
        return func.HttpResponse(status_code=reply.status, headers=headers)
    body = json.dumps(reply.body, separators=(",", ":"))
    return func.HttpResponse(body, status_code=reply.status, headers=headers,
                             mimetype="application/json", charset="utf-8")


def error_response(exc: ServiceError) -> func.HttpResponse:
    message = exc.message
    if isinstance(exc, ConfigurationError):
        _log.error("configuration error: %s", exc.message)
        message = exc.public_message
    elif exc.status >= 500:
        _log.warning("dependency error: %s (%s)", exc.code, exc.message)
    if exc.status in (429, 503):
        telemetry.metric("throttled" if exc.status == 429 else "unavailable", code=exc.code)
    headers: dict[str, str] = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = (
            'Bearer realm="acs-token-service", error="invalid_token", '
            f'error_description="{message}"')
    body: dict[str, dict[str, str | int]] = {"error": {"code": exc.code, "message": message}}
    target = getattr(exc, "field", None)
    if target:
        body["error"]["target"] = target
    if exc.retry_after is not None:
        # Browsers cannot read Retry-After across origins on Azure (platform CORS exposes
        # no response headers), so the wait is in the body too.
        body["error"]["retryAfterSeconds"] = exc.retry_after
    return render(Reply(exc.status, body, headers))


def _error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


# -- parsing ---------------------------------------------------------------------------------

def _echo(text: str, limit: int = 40) -> str:
    """Request text quoted back in an error: short, and always encodable."""
    return text[:limit].encode("utf-8", "replace").decode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise BadRequest(f"duplicate field '{_echo(key)}'", field=_echo(key))
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise BadRequest(f"{name} is not valid JSON")


def parse_json_object(req: func.HttpRequest, allowed: frozenset[str]) -> dict[str, Any]:
    """The body as a JSON object with only ``allowed`` fields; an empty body is ``{}``."""
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body must be at most {MAX_BODY_BYTES} bytes")
    if not body.strip():
        return {}
    content_type = (req.headers.get("content-type") or "application/json").lower()
    media = content_type.split(";")[0].strip()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType("the body must be application/json")
    try:
        value = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicates,
                           parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise BadRequest("the body must be UTF-8") from None
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    except ValueError:
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise BadRequest(f"unknown field '{_echo(unknown[0])}'; {_closest(unknown[0], allowed)}",
                         field=_echo(unknown[0]))
    return value


def _closest(name: str, known: Iterable[str]) -> str:
    """'did you mean ...' for a near miss (``expiresIn``), else the known names. difflib is
    imported here: only a refused request pays for it, not the cold start."""
    import difflib

    match = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    if match:
        return f"did you mean '{match[0]}'?"
    return "known fields: " + ", ".join(sorted(known))


_TOKEN_FIELDS = frozenset({"scopes", "expiresInMinutes"})
_TEAMS_FIELDS = frozenset({"token", "appId", "userId"})


def token_request(call: Call) -> TokenRequest:
    body = call.json(_TOKEN_FIELDS)
    scopes = body.get("scopes")
    parsed: tuple[Scope, ...] | None = None
    if scopes is not None:
        if not isinstance(scopes, list) or not scopes:
            raise BadRequest("scopes must be a non-empty array of strings", field="scopes")
        if len(scopes) > 16 or not all(isinstance(s, str) for s in scopes):
            raise BadRequest("scopes must be a short array of strings", field="scopes")
        try:
            parsed = tuple(dict.fromkeys(Scope(s) for s in scopes))
        except ValueError:
            bad = next(s for s in scopes if s not in Scope._value2member_map_)
            valid = ", ".join(sorted(Scope._value2member_map_))
            raise BadRequest(f"unknown scope '{_echo(bad)}'; valid scopes: {valid}",
                             field="scopes") from None
    minutes = body.get("expiresInMinutes")
    if minutes is not None and (
            isinstance(minutes, bool) or not isinstance(minutes, int) or not 60 <= minutes <= 1440):
        raise BadRequest("expiresInMinutes must be an integer from 60 to 1440",
                         field="expiresInMinutes")
    return TokenRequest(parsed, minutes)


def teams_request(call: Call) -> TeamsTokenRequest:
    body = call.json(_TEAMS_FIELDS)
    values = {}
    for name in ("token", "appId", "userId"):
        value = body.get(name)
        if not isinstance(value, str) or not value or len(value) > 8192:
            raise BadRequest(f"{name} must be a non-empty string", field=name)
        values[name] = value
    return TeamsTokenRequest(values["token"], values["appId"], values["userId"])


# -- rendering -------------------------------------------------------------------------------

def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def token_reply(token: IssuedToken) -> Reply:
    return Reply(200, {
        "acsUserId": token.acs_user_id,
        "token": token.token,
        "expiresOn": iso(token.expires_on),
        "scopes": [s.value for s in token.scopes],
    }, {"Pragma": "no-cache"})


def user_reply(record: UserRecord, status: int = 200) -> Reply:
    body: dict[str, Any] = {
        "acsUserId": record.acs_user_id,
        "createdAt": iso(record.created_at),
        "state": record.state.value,
    }
    if record.purge_at is not None:
        body["purgeAfter"] = iso(record.purge_at)
    return Reply(status, body)
