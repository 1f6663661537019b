"""The mapping store over Azure Table Storage (``azure.data.tables.aio``).

One table holds three kinds of rows (docs/protocol.md):

* ``PK=u<key>, RK=user``: the user's mapping (one partition per user, so point reads
  scale out);
* ``PK=~claims, RK=u<key>``: first-token creations in flight (leased);
* ``PK=~purge, RK=<due>_u<key>``: the purge index, ordered by due time, so a purge run
  reads exactly the users that are due and never scans active ones.

Times are stored as fixed-width ISO strings so that they compare exactly and sort
lexically. SDK exceptions are translated into ``shared.errors`` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from . import keys
from .errors import BadRequest, PreconditionFailed, StoreConflict, Unavailable
from .models import Claim, PurgeEntry, UserRecord, UserState
from .telemetry import round_trips
from .transport import use_env_settings

T = TypeVar("T")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_DUE_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Budget:
    """How long one storage call may take, every SDK attempt and backoff included.

    ``read_timeout`` and ``retry_total`` go to azure-core per call (its RetryPolicy and
    transport read them from each operation's keyword arguments:
    https://learn.microsoft.com/python/api/azure-core/azure.core.pipeline.policies.retrypolicy).
    Those alone do not bound a call: ``read_timeout`` is aiohttp's ``sock_read`` (time
    between two reads, not in total), a ``Retry-After`` from the service overrides the
    backoff cap, and azure-core's own ``timeout`` option only caps the connection timeout
    (and the Tables SDK would send it to the server as its ``timeout`` query parameter).
    So ``seconds`` is enforced here as well, around the whole call.
    """

    seconds: float
    read_timeout: float
    retry_total: int

    def kwargs(self) -> dict[str, Any]:
        return {"read_timeout": self.read_timeout, "retry_total": self.retry_total}


#: Point reads and writes on a caller's path: two attempts of at most 1.5 s of silence
#: each. A stalled store costs a token request about 3.5 s before its 503, not 30 s.
POINT = Budget(seconds=4.0, read_timeout=1.5, retry_total=1)
#: ``GET /api/health``: one attempt, answered within about 2.5 s.
PING = Budget(seconds=2.5, read_timeout=2.0, retry_total=0)
#: Range queries, which only the purge timer runs (up to PURGE_BATCH_SIZE + 1 rows):
#: it has minutes, so a slow store gets more patience before the run gives up.
QUERY = Budget(seconds=30.0, read_timeout=10.0, retry_total=2)

#: Table calls in flight at once per worker: aiohttp's connection pool per client (its
#: ``TCPConnector`` default ``limit=100``). Beyond it a call waits for a free connection;
#: that wait is queueing in this process, not the store being slow, so it is bounded
#: separately (:data:`SLOT_WAIT_SECONDS`) and each :class:`Budget` starts only once the
#: call holds a connection slot.
CONNECTION_SLOTS = 100
#: Longest wait for a free connection slot. A burst of thousands of requests in one
#: worker queues here (the bench's login storm, 3,000 first tokens within 3 s on 2 cores:
#: up to about 6 s); a hung store fills every slot for at most a budget each, so a
#: waiting call gives up (503) after this long rather than waiting for all of them.
SLOT_WAIT_SECONDS = 10.0

#: Client-wide SDK settings; each call overrides ``read_timeout``/``retry_total`` with its
#: :class:`Budget`. Connecting is fast on any working network; 2 s covers a cold TLS setup.
TRANSPORT_OPTIONS: dict[str, Any] = {
    "retry_total": POINT.retry_total,
    "retry_backoff_factor": 0.2,
    "retry_backoff_max": 1,
    "connection_timeout": 2,
    "read_timeout": POINT.read_timeout,
}


def _client_options() -> dict[str, Any]:
    return {**TRANSPORT_OPTIONS, "raw_request_hook": round_trips.table_hook,
            "use_env_settings": use_env_settings()}


def _fmt(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(_TIME_FORMAT)


def _parse(raw: str) -> datetime:
    # Our own fixed format; fromisoformat is ~8x faster than strptime on the token path.
    return datetime.fromisoformat(raw[:-1]).replace(tzinfo=timezone.utc)


class TableIdentityStore:
    """:class:`shared.ports.IdentityStore` over one Azure table."""

    def __init__(self, client: TableClient) -> None:
        self._client = client
        self._table_ready = False
        self._slots = asyncio.Semaphore(CONNECTION_SLOTS)
        #: Longest wait for a slot so far (seconds), for the bench's storm report.
        self.longest_slot_wait = 0.0

    @classmethod
    def from_connection_string(cls, connection_string: str, table_name: str) -> TableIdentityStore:
        return cls(TableClient.from_connection_string(
            connection_string, table_name, **_client_options()))

    @classmethod
    def from_service_uri(cls, service_uri: str, table_name: str,
                         credential: Any) -> TableIdentityStore:
        return cls(TableClient(endpoint=service_uri, table_name=table_name,
                               credential=credential, **_client_options()))

    async def close(self) -> None:
        await self._client.close()

    # -- users ---------------------------------------------------------------------------

    async def get_user(self, user_id: str) -> UserRecord | None:
        entity = await self._get(keys.user_key(user_id), keys.USERS_ROW)
        if entity is None:
            return None
        purge_at = entity.get("PurgeAt")
        return UserRecord(
            user_id=entity["UserId"],
            acs_user_id=entity["AcsUserId"],
            state=UserState(entity["State"]),
            created_at=_parse(entity["CreatedAt"]),
            purge_at=_parse(purge_at) if purge_at else None,
            etag=entity.metadata["etag"],
        )

    async def insert_user(self, record: UserRecord) -> UserRecord:
        meta = await self._write(self._client.create_entity, self._user_entity(record))
        return _with_etag(record, meta)

    async def replace_user(self, record: UserRecord) -> UserRecord:
        meta = await self._write(self._client.update_entity, self._user_entity(record),
                                 mode=UpdateMode.REPLACE, etag=record.etag,
                                 match_condition=MatchConditions.IfNotModified)
        return _with_etag(record, meta)

    async def delete_user(self, record: UserRecord) -> None:
        await self._delete(keys.user_key(record.user_id), keys.USERS_ROW, record.etag)

    @staticmethod
    def _user_entity(record: UserRecord) -> dict[str, Any]:
        entity = {
            "PartitionKey": keys.user_key(record.user_id),
            "RowKey": keys.USERS_ROW,
            "UserId": record.user_id,
            "AcsUserId": record.acs_user_id,
            "State": record.state.value,
            "CreatedAt": _fmt(record.created_at),
        }
        if record.purge_at is not None:
            entity["PurgeAt"] = _fmt(record.purge_at)
        return entity

    # -- claims --------------------------------------------------------------------------

    async def get_claim(self, user_id: str) -> Claim | None:
        entity = await self._get(keys.CLAIMS_PARTITION, keys.user_key(user_id))
        return None if entity is None else _claim(entity)

    async def insert_claim(self, claim: Claim) -> Claim:
        meta = await self._write(self._client.create_entity, _claim_entity(claim))
        return replace(claim, etag=meta.get("etag"))

    async def replace_claim(self, claim: Claim) -> Claim:
        meta = await self._write(self._client.update_entity, _claim_entity(claim),
                                 mode=UpdateMode.REPLACE, etag=claim.etag,
                                 match_condition=MatchConditions.IfNotModified)
        return replace(claim, etag=meta.get("etag"))

    async def delete_claim(self, claim: Claim) -> None:
        await self._delete(keys.CLAIMS_PARTITION, keys.user_key(claim.user_id), claim.etag)

    async def expired_claims(self, now: datetime, limit: int) -> Sequence[Claim]:
        query = "PartitionKey eq @pk and LeaseUntil lt @now"
        entities = await self._query(query, {"pk": keys.CLAIMS_PARTITION, "now": _fmt(now)}, limit)
        return [_claim(entity) for entity in entities]

    # -- purge index ---------------------------------------------------------------------

    async def put_purge_entry(self, entry: PurgeEntry) -> None:
        await self._write(self._client.upsert_entity, {
            "PartitionKey": keys.PURGE_PARTITION,
            "RowKey": _purge_row(entry),
            "UserId": entry.user_id,
            "Due": _fmt(entry.due),
        }, mode=UpdateMode.REPLACE)

    async def due_purge_entries(self, now: datetime, limit: int) -> Sequence[PurgeEntry]:
        # Row keys start with the due time, so "due by now" is one key range.
        upper = now.astimezone(timezone.utc).strftime(_DUE_FORMAT) + "~"
        query = "PartitionKey eq @pk and RowKey lt @upper"
        entities = await self._query(query, {"pk": keys.PURGE_PARTITION, "upper": upper}, limit)
        return [PurgeEntry(entity["UserId"], _parse(entity["Due"]), entity.metadata["etag"])
                for entity in entities]

    async def delete_purge_entry(self, entry: PurgeEntry) -> None:
        # Only the version that was read: a delete re-upserting the same entry meanwhile
        # (same user, same second) must keep it. Gone or changed is fine either way.
        with contextlib.suppress(PreconditionFailed):
            await self._delete(keys.PURGE_PARTITION, _purge_row(entry), entry.etag)

    async def ping(self) -> None:
        await self._get(keys.CLAIMS_PARTITION, "~ping", PING)

    # -- plumbing ------------------------------------------------------------------------

    async def _get(self, pk: str, rk: str, budget: Budget = POINT) -> Any:
        try:
            return await self._guard(
                lambda: self._client.get_entity(pk, rk, **budget.kwargs()), budget)
        except _Missing:
            return None

    async def _query(self, query: str, params: dict[str, str], limit: int) -> list[Any]:
        async def run() -> list[Any]:
            found: list[Any] = []
            pages = self._client.query_entities(query, parameters=params,
                                                results_per_page=min(limit, 1000),
                                                **QUERY.kwargs())
            async for entity in pages:
                found.append(entity)
                if len(found) >= limit:
                    break
            return found
        try:
            return await self._guard(run, QUERY)
        except _Missing:
            return []

    async def _write(self, op: Callable[..., Awaitable[Any]], entity: dict[str, Any],
                     **kwargs: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await self._guard(
                lambda: op(entity=entity, **kwargs, **POINT.kwargs()), POINT)
        except _Missing:
            raise PreconditionFailed("the row changed or is gone") from None
        return result

    async def _delete(self, pk: str, rk: str, etag: str | None) -> None:
        kwargs: dict[str, Any] = {}
        if etag is not None:
            kwargs = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        try:
            await self._guard(
                lambda: self._client.delete_entity(pk, rk, **kwargs, **POINT.kwargs()), POINT)
        except _Missing:
            if etag is not None:
                raise PreconditionFailed("the row is gone") from None

    async def _guard(self, call: Callable[[], Awaitable[T]], budget: Budget) -> T:
        """Run one SDK call within ``budget``, creating the table on first need,
        translating errors. A call cut off by its budget is :class:`Unavailable`, like a
        timeout of the SDK's own (for a write, its outcome is unknown either way).

        The budget measures the store, not this process's queue: it starts once the call
        holds one of :data:`CONNECTION_SLOTS` (the wait for a slot has its own bound)."""
        for attempt in range(2):
            try:
                await self._acquire_slot()
                try:
                    return await asyncio.wait_for(call(), budget.seconds)
                finally:
                    self._slots.release()
            except ResourceExistsError:
                raise StoreConflict("the row already exists") from None
            except ResourceModifiedError:
                raise PreconditionFailed("the row changed since it was read") from None
            except ResourceNotFoundError as exc:
                if _error_code(exc) != "TableNotFound" or attempt:
                    raise _Missing from None
                await self._create_table(budget)
            except HttpResponseError as exc:
                raise _translate(exc) from None
            except (AzureError, OSError, asyncio.TimeoutError):
                raise Unavailable("table storage is unreachable") from None
        raise Unavailable("table storage is unreachable")  # pragma: no cover

    async def _acquire_slot(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns at once
            return
        began = time.monotonic()
        try:
            await _bounded(self._slots.acquire(), SLOT_WAIT_SECONDS)
        except asyncio.TimeoutError:
            raise Unavailable("table storage is busy; retry", retry_after=1) from None
        self.longest_slot_wait = max(self.longest_slot_wait, time.monotonic() - began)

    async def _create_table(self, budget: Budget) -> None:
        try:
            await asyncio.wait_for(self._client.create_table(**budget.kwargs()), budget.seconds)
        except ResourceExistsError:
            pass
        except (AzureError, OSError, asyncio.TimeoutError):
            raise Unavailable("table storage is unreachable") from None


if sys.version_info >= (3, 11):
    async def _bounded(call: Awaitable[T], seconds: float) -> T:
        """``call`` or ``asyncio.TimeoutError`` after ``seconds``, in the caller's task
        (for waits on this process only; SDK calls get a task of their own)."""
        async with asyncio.timeout(seconds):
            return await call
else:  # pragma: no cover - Python 3.10
    async def _bounded(call: Awaitable[T], seconds: float) -> T:
        return await asyncio.wait_for(call, seconds)


class _Missing(Exception):
    """The addressed row does not exist (internal to this adapter)."""


def _error_code(exc: HttpResponseError) -> str:
    code = getattr(exc, "error_code", None)
    if code:
        return str(getattr(code, "value", code))
    # Some operations (create_entity) leave error_code unset; the body still names it.
    text = str(exc)
    return "TableNotFound" if '"TableNotFound"' in text else ""


def _translate(exc: HttpResponseError) -> Exception:
    status = exc.status_code or 0
    if status == 412:
        return PreconditionFailed("the row changed since it was read")
    if status == 409:
        return StoreConflict("the row already exists")
    if status in (400, 413):
        return BadRequest("the request cannot be stored")
    return Unavailable("table storage is failing")


def _with_etag(record: UserRecord, meta: dict[str, Any]) -> UserRecord:
    return UserRecord(record.user_id, record.acs_user_id, record.state, record.created_at,
                      record.purge_at, meta.get("etag"))


def _claim(entity: Any) -> Claim:
    return Claim(entity["UserId"], _parse(entity["LeaseUntil"]), entity.metadata["etag"],
                 entity.get("Owner", ""))


def _claim_entity(claim: Claim) -> dict[str, Any]:
    return {
        "PartitionKey": keys.CLAIMS_PARTITION,
        "RowKey": keys.user_key(claim.user_id),
        "UserId": claim.user_id,
        "LeaseUntil": _fmt(claim.lease_until),
        "Owner": claim.owner,
    }


def _purge_row(entry: PurgeEntry) -> str:
    return entry.due.astimezone(timezone.utc).strftime(_DUE_FORMAT) + "_" + keys.user_key(
        entry.user_id)
