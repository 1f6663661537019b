"""ACS Identity over the official aio SDK, with our own bounded retries.

The SDK's retry policy is switched off (``retry_total=0``): it would sleep through any
``Retry-After`` however long, holding the caller. Here a 429 is retried only while its
``Retry-After`` fits the budget, 5xx and connection failures get a short backoff, and
everything else becomes a ``shared.errors`` type the HTTP layer knows how to render.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from azure.communication.identity import CommunicationUserIdentifier
from azure.communication.identity.aio import CommunicationIdentityClient
from azure.core.exceptions import AzureError, HttpResponseError

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

    def __init__(self, client: CommunicationIdentityClient) -> None:
        self._client = client

    @classmethod
    def from_connection_string(cls, connection_string: str, *,
                               timeout: float = 10.0) -> SdkAcsGateway:
        return cls(CommunicationIdentityClient.from_connection_string(
            connection_string, **_client_options(timeout)))

    @classmethod
    def from_endpoint(cls, endpoint: str, credential: Any, *,
                      timeout: float = 10.0) -> SdkAcsGateway:
        return cls(CommunicationIdentityClient(endpoint, credential, **_client_options(timeout)))

    async def close(self) -> None:
        await self._client.close()

    async def create_user_and_token(self, scopes: Sequence[Scope],
                                    minutes: int) -> tuple[str, AcsToken]:
        user, token = await _call("createUserAndToken", lambda: self._client.create_user_and_token(
            [s.value for s in scopes], token_expires_in=timedelta(minutes=minutes)))
        return str(user.properties["id"]), _token(token)

    async def get_token(self, acs_user_id: str, scopes: Sequence[Scope], minutes: int) -> AcsToken:
        token = await _call("issueAccessToken", lambda: self._client.get_token(
            CommunicationUserIdentifier(acs_user_id), [s.value for s in scopes],
            token_expires_in=timedelta(minutes=minutes)))
        return _token(token)

    async def revoke_tokens(self, acs_user_id: str) -> None:
        await _call("revokeAccessTokens", lambda: self._client.revoke_tokens(
            CommunicationUserIdentifier(acs_user_id)))

    async def delete_user(self, acs_user_id: str) -> None:
        await _call("deleteIdentity", lambda: self._client.delete_user(
            CommunicationUserIdentifier(acs_user_id)))

    async def exchange_teams_token(self, token: str, app_id: str, user_id: str) -> AcsToken:
        result = await _call("exchangeTeamsUserAccessToken",
                             lambda: self._client.get_token_for_teams_user(token, app_id, user_id))
        return _token(result)


async def _call(operation: str, call: Callable[[], Awaitable[T]]) -> T:
    started = time.monotonic()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return await call()
        except HttpResponseError as exc:
            error, wait = _classify(operation, exc, attempt)
        except (AzureError, OSError, asyncio.TimeoutError):
            error, wait = Unavailable("ACS is unreachable"), _backoff(attempt)
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
