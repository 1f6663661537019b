"""ACS Identity over the official aio SDK, with our own bounded retries.

The SDK's retry policy is switched off (``retry_total=0``): it would sleep through any
``Retry-After`` however long, holding the caller. Here a 429 is retried only while its
``Retry-After`` fits the budget, 5xx and connection failures get a short backoff, and
everything else becomes a ``shared.errors`` type the HTTP layer knows how to render.

Every attempt is cut off after ``timeout`` seconds (``ACS_TIMEOUT_SECONDS``) in total,
not only after that much silence on the socket, and no attempt starts later than
:data:`RETRY_BUDGET_SECONDS` after the first: one call takes at most
``timeout + RETRY_BUDGET_SECONDS``.

``createUserAndToken`` is not idempotent: when its request may have reached ACS but no
answer came back (a timeout, a connection lost after sending), ACS may have created an
identity that nobody will ever record. Such a create is not retried (a retry is what
would make the second identity), and is logged as ``event=acs_create_outcome_unknown``
at ERROR so that operators can count and find them (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import urlsplit

from azure.communication.identity import CommunicationUserIdentifier
from azure.communication.identity.aio import CommunicationIdentityClient
from azure.core.exceptions import AzureError, HttpResponseError

from . import telemetry
from .errors import AcsIdentityNotFound, AcsRejected, ServiceError, Throttled, Unavailable
from .models import AcsToken, Scope
from .telemetry import logger, metric, round_trips
from .transport import use_env_settings

T = TypeVar("T")
MAX_ATTEMPTS = 3
#: Longest total time spent waiting between attempts of one call.
RETRY_BUDGET_SECONDS = 3.0


def _client_options(timeout: float) -> dict[str, Any]:
    return {
        "retry_total": 0,
        "connection_timeout": min(5.0, timeout),
        "read_timeout": timeout,
        "raw_request_hook": round_trips.acs_hook,
        "use_env_settings": use_env_settings(),
    }


class SdkAcsGateway:
    """:class:`shared.ports.AcsGateway` over ``CommunicationIdentityClient`` (aio)."""

    def __init__(self, client: CommunicationIdentityClient, *, timeout: float = 10.0,
                 resource: str = "") -> None:
        self._client = client
        self._timeout = timeout
        self._resource = resource

    @classmethod
    def from_connection_string(cls, connection_string: str, *,
                               timeout: float = 10.0) -> SdkAcsGateway:
        return cls(CommunicationIdentityClient.from_connection_string(
            connection_string, **_client_options(timeout)), timeout=timeout,
            resource=_host(_endpoint_of(connection_string)))

    @classmethod
    def from_endpoint(cls, endpoint: str, credential: Any, *,
                      timeout: float = 10.0) -> SdkAcsGateway:
        return cls(CommunicationIdentityClient(endpoint, credential, **_client_options(timeout)),
                   timeout=timeout, resource=_host(endpoint))

    async def close(self) -> None:
        await self._client.close()

    async def create_user_and_token(self, scopes: Sequence[Scope],
                                    minutes: int) -> tuple[str, AcsToken]:
        user, token = await self._call(
            "createUserAndToken", lambda: self._client.create_user_and_token(
                [s.value for s in scopes], token_expires_in=timedelta(minutes=minutes)),
            idempotent=False)
        return str(user.properties["id"]), _token(token)

    async def get_token(self, acs_user_id: str, scopes: Sequence[Scope], minutes: int) -> AcsToken:
        token = await self._call("issueAccessToken", lambda: self._client.get_token(
            CommunicationUserIdentifier(acs_user_id), [s.value for s in scopes],
            token_expires_in=timedelta(minutes=minutes)))
        return _token(token)

    async def revoke_tokens(self, acs_user_id: str) -> None:
        await self._call("revokeAccessTokens", lambda: self._client.revoke_tokens(
            CommunicationUserIdentifier(acs_user_id)))

    async def delete_user(self, acs_user_id: str) -> None:
        await self._call("deleteIdentity", lambda: self._client.delete_user(
            CommunicationUserIdentifier(acs_user_id)))

    async def exchange_teams_token(self, token: str, app_id: str, user_id: str) -> AcsToken:
        result = await self._call(
            "exchangeTeamsUserAccessToken",
            lambda: self._client.get_token_for_teams_user(token, app_id, user_id))
        return _token(result)

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]], *,
                    idempotent: bool = True) -> T:
        return await _call(operation, call, self._timeout,
                           None if idempotent else self._outcome_unknown)

    def _outcome_unknown(self, operation: str, sent_at: datetime, reason: str) -> None:
        """ACS may have acted on a request whose answer never came: say so, loudly."""
        telemetry.event(
            "acs_create_outcome_unknown", logging.ERROR, operation=operation,
            user=telemetry.current_user.get(), windowStart=_iso(sent_at),
            windowEnd=_iso(datetime.now(timezone.utc)), resource=self._resource or None,
            reason=reason)
        metric("acs_outcome_unknown", operation=operation)


#: Called for a non-idempotent request whose outcome is unknown: (operation, sent, reason).
OutcomeUnknown = Callable[[str, datetime, str], None]


async def _call(operation: str, call: Callable[[], Awaitable[T]], timeout: float = 10.0,
                outcome_unknown: OutcomeUnknown | None = None) -> T:
    """Up to MAX_ATTEMPTS attempts of at most ``timeout`` s each, all started within
    RETRY_BUDGET_SECONDS. With ``outcome_unknown`` (a non-idempotent call) an attempt
    that may have reached ACS without an answer is reported to it and not retried."""
    started = time.monotonic()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        sent_at = datetime.now(timezone.utc)
        try:
            # wait_for runs the SDK call in a task of its own, on purpose: every I/O
            # wake-up then resumes only the SDK's own coroutine chain (about 40 frames of
            # pipeline policies and transport), not that chain plus the invocation's
            # (worker, entry, service). Measured (bench pairs at concurrency 64):
            # asyncio.timeout here instead costs ~0.05 of the CPU ratio to the ceiling.
            return await asyncio.wait_for(call(), timeout)
        except HttpResponseError as exc:
            error, wait = _classify(operation, exc, attempt)
            if outcome_unknown is not None and (exc.status_code or 0) in (408, 504):
                # A timeout somewhere between us and ACS: it may have gone through.
                outcome_unknown(operation, sent_at, f"status_{exc.status_code}")
                raise error from None
        except (AzureError, OSError, asyncio.TimeoutError) as exc:
            error, wait = Unavailable("ACS is unreachable"), _backoff(attempt)
            if outcome_unknown is not None and not _never_sent(exc):
                outcome_unknown(operation, sent_at, _reason(exc))
                raise error from None
        spent = time.monotonic() - started
        if wait is None or attempt == MAX_ATTEMPTS or spent + wait > RETRY_BUDGET_SECONDS:
            if isinstance(error, Throttled):
                metric("throttled", operation=operation)
            raise error
        await asyncio.sleep(wait)
    raise Unavailable("ACS is unreachable")  # pragma: no cover


def _classify(operation: str, exc: HttpResponseError,
              attempt: int) -> tuple[ServiceError, float | None]:
    """Map an ACS error to ours, and say how long to wait before retrying (None: don't)."""
    status = exc.status_code or 0
    if status == 404:
        return AcsIdentityNotFound("ACS identity not found"), None
    if status == 429:
        retry_after = _retry_after(exc)
        return Throttled("ACS is throttling requests", retry_after=retry_after), float(retry_after)
    if status >= 500 or status == 408:
        return Unavailable("ACS is failing", retry_after=_retry_after(exc)), _backoff(attempt)
    if operation == "exchangeTeamsUserAccessToken" and (
            status == 400 or (status == 401 and _code(exc) == "InvalidAccessToken")):
        # Only these blame the caller's Teams token; any other 401/403 is ACS refusing
        # the service's own credential, an outage for operators to see.
        return AcsRejected("the Teams token was not accepted"), None
    # 401/403 on our own calls: our key or role is wrong. Operators see it in the log;
    # callers see an outage, not the reason.
    logger.error("ACS rejected the service's credentials (status %s, %s)", status, operation)
    return Unavailable("ACS rejected the service's request", retry_after=30), None


def _code(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    if code:
        return str(code)
    response = getattr(exc, "response", None)
    try:
        body = json.loads(response.text()) if response is not None else {}
        return str(body.get("error", {}).get("code") or "")
    except (ValueError, AttributeError, TypeError):
        return ""


def _retry_after(exc: HttpResponseError) -> int:
    response = getattr(exc, "response", None)
    raw = response.headers.get("Retry-After") if response is not None else None
    try:
        return max(1, int(float(raw))) if raw else 1
    except ValueError:
        return 1


def _never_sent(exc: BaseException) -> bool:
    """Whether the request certainly never reached ACS: the connection was not established.

    azure-core's ``ServiceRequestError`` is not enough: its aiohttp transport raises it for
    any ``aiohttp.ClientError``, a connection reset after the request was sent included.
    Only a failure to connect (refused, DNS, TLS, connect timeout) proves nothing was sent.
    """
    import aiohttp

    inner = getattr(exc, "inner_exception", None) or exc.__cause__
    return isinstance(inner, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    inner = getattr(exc, "inner_exception", None) or exc.__cause__
    if isinstance(inner, asyncio.TimeoutError):
        return "timeout"
    return "connection_lost"


def _endpoint_of(connection_string: str) -> str:
    for part in connection_string.split(";"):
        name, _, value = part.partition("=")
        if name.strip().lower() == "endpoint":
            return value.strip()
    return ""


def _host(endpoint: str) -> str:
    """The resource's host name only (never a key), for logs."""
    try:
        return urlsplit(endpoint).hostname or ""
    except ValueError:
        return ""


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _backoff(attempt: int) -> float:
    jitter: float = 0.5 + random.random() / 2  # noqa: S311 - jitter, not crypto
    return min(2.0, 0.1 * 2.0 ** attempt) * jitter


def _token(token: Any) -> AcsToken:
    return AcsToken(token.token, parse_expires_on(token.expires_on))


_FROMISO_TAKES_ANY_FRACTION = sys.version_info >= (3, 11)


def parse_expires_on(raw: Any) -> datetime:
    """ACS sends ISO 8601 with up to 7 fractional digits; SDK 1.5.0 passes the raw string
    through (other versions give a datetime or epoch seconds)."""
    if isinstance(raw, datetime):
        return raw.astimezone(timezone.utc)
    if isinstance(raw, (int, float)):
        return datetime.fromtimestamp(raw, timezone.utc)
    if _FROMISO_TAKES_ANY_FRACTION:
        with contextlib.suppress(ValueError, TypeError):  # 3.11+: one C call, 7 digits fine
            moment = datetime.fromisoformat(raw)
            if moment.tzinfo is not None:
                return moment.astimezone(timezone.utc)
    text = str(raw).strip().replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        tz = rest[len(digits):]
        text = f"{head}.{digits[:6].ljust(6, '0')}{tz}"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
