"""Per-worker singletons, built lazily on first use and reused by every invocation.

The Functions worker runs every async function on one event loop for its lifetime, so
SDK clients (and their connection pools) are created once, inside that loop, and shared.
Heavy imports (the Azure SDKs, PyJWT, aiohttp) happen here, on first need, never when
function_app.py is imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from . import telemetry
from .config import Settings, get_settings
from .errors import Unavailable
from .models import AuthMode, Caller

if TYPE_CHECKING:
    from .ports import Checkpoint
    from .service import TokenService


class Authenticator(Protocol):
    async def authenticate(self, headers: Mapping[str, str]) -> Caller: ...


class _Worker:
    def __init__(self) -> None:
        self.service: TokenService | None = None
        self.authenticator: Authenticator | None = None
        self.store: Any = None
        self.acs: Any = None
        self.scheduler: Any = None
        self.session: Any = None
        self.credential: Any = None
        self.checkpoint: Checkpoint | None = None
        self.lock: asyncio.Lock | None = None


_worker = _Worker()
#: Whether the first build has moved the worker's objects out of the collector's sight.
_frozen = False


async def get_service() -> TokenService:
    if _worker.service is None:
        await _build()
    assert _worker.service is not None
    return _worker.service


async def authenticate(headers: Mapping[str, str]) -> Caller:
    if _worker.authenticator is None:
        await _build()
    assert _worker.authenticator is not None
    return await _worker.authenticator.authenticate(headers)


def built_store() -> Any:
    """The worker's identity store if built yet (the bench reads its figures)."""
    return _worker.store


async def check_health() -> None:
    """Settings valid and Table Storage reachable, or raise."""
    await get_service()
    await _worker.store.ping()


def set_checkpoint(checkpoint: Checkpoint | None) -> None:
    """Crash-injection hook for tests; applies to the service built next."""
    _worker.checkpoint = checkpoint
    _worker.service = None


async def reset() -> None:
    """Close every client and forget settings (tests, and the local host's reloads)."""
    from .config import reset_settings

    global _worker
    old, _worker = _worker, _Worker()
    reset_settings()
    telemetry.reset_counts()
    for resource in (old.store, old.acs, old.scheduler, old.session, old.credential):
        if resource is not None:
            with contextlib.suppress(Exception):  # closing is best effort
                await resource.close()


async def _build() -> None:
    if _worker.lock is None:
        _worker.lock = asyncio.Lock()
    async with _worker.lock:
        with _first_build_frozen():
            telemetry.quiet_sdk_loggers()  # before any SDK client exists
            settings = get_settings()
            if _worker.authenticator is None:
                _worker.authenticator = _authenticator(settings)
            if _worker.service is None:
                from .service import TokenService

                if _worker.store is None:
                    _worker.store = _store(settings)
                if _worker.acs is None:
                    _worker.acs = _acs(settings)
                if _worker.scheduler is None:
                    _worker.scheduler = _scheduler(settings)
                kwargs: dict[str, Any] = {}
                if _worker.checkpoint is not None:
                    kwargs["checkpoint"] = _worker.checkpoint
                _worker.service = TokenService(_worker.store, _worker.acs, settings,
                                               scheduler=_worker.scheduler, **kwargs)


@contextlib.contextmanager
def _first_build_frozen() -> Iterator[None]:
    """The worker's first build, without a full garbage collection in the middle of it.

    The first build imports the SDKs, the JWT verifier and the service (tens of thousands of
    long-lived objects) inside the first request. Those allocations trip CPython's
    collector, and the first full collection then walks every object of the process:
    ~15 ms in the middle of a fresh worker's first token (`python -m bench.coldstart`),
    and again at each later full collection, although module-level objects live as long
    as the worker. So the collector is paused while the first build runs, and what
    exists once it has finished is frozen (``gc.freeze``, the documented way to keep
    long-lived startup objects out of every future collection). Once per process: any
    cyclic garbage present at that moment is kept, a bounded one-time cost.
    """
    global _frozen
    if _frozen or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
        gc.freeze()
        _frozen = True
    finally:
        gc.enable()


def _authenticator(settings: Settings) -> Authenticator:
    from . import auth

    if settings.auth_mode is AuthMode.EASYAUTH:
        return auth.EasyAuthAuthenticator(settings)
    return auth.JwtAuthenticator(settings, _fetch_json)


def _store(settings: Settings) -> Any:
    from .store import TableIdentityStore

    if settings.table_connection is not None:
        return TableIdentityStore.from_connection_string(
            settings.table_connection, settings.table_name)
    assert settings.table_service_uri is not None
    return TableIdentityStore.from_service_uri(
        settings.table_service_uri, settings.table_name, _credential(settings))


def _acs(settings: Settings) -> Any:
    from .acs import SdkAcsGateway

    if settings.acs_connection_string is not None:
        return SdkAcsGateway.from_connection_string(
            settings.acs_connection_string, timeout=settings.acs_timeout_seconds)
    assert settings.acs_endpoint is not None
    return SdkAcsGateway.from_endpoint(
        settings.acs_endpoint, _credential(settings), timeout=settings.acs_timeout_seconds)


def _scheduler(settings: Settings) -> Any:
    """The delayed revoke's scheduler, built on the first delete: a token never needs
    it, and the queue SDK (azure-storage-queue, which imports requests and urllib3:
    ~40 ms) stays off a fresh worker's first-token path."""
    if settings.queue_connection is None and settings.queue_service_uri is None:
        import logging

        logging.getLogger("acs_token_service").warning(
            "no queue storage configured (AzureWebJobsStorage): a delete's second revoke "
            "runs in this process and is lost if it stops")
    return _OnFirstUse(lambda: _build_scheduler(settings))


class _OnFirstUse:
    """A :class:`shared.ports.RevokeScheduler` that builds the real one on first use."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._scheduler: Any = None

    async def revoke_later(self, user_id: str, delay_seconds: float) -> None:
        if self._scheduler is None:
            self._scheduler = self._build()
        await self._scheduler.revoke_later(user_id, delay_seconds)

    async def close(self) -> None:
        if self._scheduler is not None:
            await self._scheduler.close()


def _build_scheduler(settings: Settings) -> Any:
    """The delayed revoke's queue (AzureWebJobsStorage, as the queue trigger reads it);
    without one, an in-process timer (docs/protocol.md says what that loses)."""
    from .queue import InProcessRevokeScheduler, QueueRevokeScheduler

    if settings.queue_connection is not None:
        return QueueRevokeScheduler.from_connection_string(
            settings.queue_connection, settings.revoke_queue_name)
    if settings.queue_service_uri is not None:
        return QueueRevokeScheduler.from_service_uri(
            settings.queue_service_uri, settings.revoke_queue_name, _credential(settings))

    async def run(user_id: str) -> object:
        return await (await get_service()).revoke_after_delete(user_id)

    return InProcessRevokeScheduler(run)


def _credential(settings: Settings) -> Any:
    """Managed identity (user-assigned when AZURE_CLIENT_ID is set), else the default
    chain; imported only when a connection string is not used."""
    if _worker.credential is None:
        if settings.azure_client_id:
            from azure.identity.aio import ManagedIdentityCredential

            _worker.credential = ManagedIdentityCredential(client_id=settings.azure_client_id)
        else:
            from azure.identity.aio import DefaultAzureCredential

            _worker.credential = DefaultAzureCredential()
    return _worker.credential


#: The largest discovery document or JWKS accepted. Real ones are a few KB (Entra ID's
#: JWKS about 10 KB); anything past this is refused as it streams in, never buffered whole.
MAX_DOCUMENT_BYTES = 1 << 20


async def _fetch_json(url: str) -> Any:
    import aiohttp

    if _worker.session is None:
        _worker.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=3, sock_connect=2))
    try:
        async with _worker.session.get(url, headers={"Accept": "application/json"}) as response:
            if response.status != 200:
                raise Unavailable("the identity provider answered with an error")
            if (response.content_length or 0) > MAX_DOCUMENT_BYTES:
                raise Unavailable("the identity provider's answer is too large")
            body = bytearray()
            async for chunk in response.content.iter_chunked(65536):
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise Unavailable("the identity provider's answer is too large")
            return json.loads(body)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, RecursionError):
        # RecursionError: a document of thousands of nested arrays (json.loads recurses).
        raise Unavailable("the identity provider is unreachable") from None
