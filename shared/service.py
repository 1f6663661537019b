"""The token service: every business rule, over the ``IdentityStore`` and ``AcsGateway``
protocols. No ``azure`` import here; docs/protocol.md explains each multi-step write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from . import telemetry
from .config import Settings
from .errors import (
    AcsIdentityNotFound,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    ServiceError,
    StoreConflict,
    Throttled,
    Unavailable,
    UserDeleted,
)
from .models import (
    AcsToken,
    Caller,
    Claim,
    EventAction,
    IssuedToken,
    PurgeEntry,
    PurgeReport,
    Scope,
    TeamsTokenRequest,
    TokenRequest,
    UserEvent,
    UserRecord,
    UserState,
)

if TYPE_CHECKING:  # annotations only: the cold path need not build the Protocols
    from .ports import AcsGateway, Checkpoint, Clock, IdentityStore, RevokeScheduler

#: How long a request waits for another request's first-token creation to finish.
CREATION_WAIT_SECONDS = 10.0
#: Concurrent ACS deletes in one purge run (the rate limiter bounds the rate).
PURGE_CONCURRENCY = 8
#: A purge run stops starting new work after this long (the function timeout is longer).
PURGE_TIME_BUDGET_SECONDS = 240.0
#: Fraction of the ACS delete limit the purge may use, leaving room for HTTP deletes.
PURGE_RATE_SHARE = 0.95
#: An issuance (row read to token in hand) ends within ACS_TIMEOUT_SECONDS plus this,
#: whatever the ACS adapter's own retries would take; it equals the adapter's budget for
#: waiting between attempts (a 429's Retry-After, a 5xx backoff), so one slow attempt
#: plus the usual retries fit, and only a pile-up of slow attempts is cut short.
ISSUE_SLACK_SECONDS = 3.0
#: The delayed revoke runs this long after the latest moment an issuance that read the
#: row as active can still hold a token (clock drift, event-loop lag).
REVOKE_MARGIN_SECONDS = 3.0


def issue_deadline_seconds(settings: Settings) -> float:
    """Longest time from the start of a token request's row read to its token."""
    return settings.acs_timeout_seconds + ISSUE_SLACK_SECONDS


def revoke_delay_seconds(settings: Settings) -> float:
    """How long after a delete its second revoke runs: after every issuance that could
    have read the row as active has ended (docs/protocol.md, "Delete")."""
    return issue_deadline_seconds(settings) + REVOKE_MARGIN_SECONDS


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _no_checkpoint(step: str) -> None:
    return None


class TokenService:
    def __init__(self, store: IdentityStore, acs: AcsGateway, settings: Settings, *,
                 scheduler: RevokeScheduler, clock: Clock | None = None,
                 checkpoint: Checkpoint = _no_checkpoint) -> None:
        self._store = store
        self._acs = acs
        self._settings = settings
        self._scheduler = scheduler
        self._clock = clock or SystemClock()
        self._checkpoint = checkpoint
        self._issue_deadline = issue_deadline_seconds(settings)

    # -- tokens ------------------------------------------------------------------------

    async def issue_token(self, caller: Caller, request: TokenRequest) -> IssuedToken:
        """A token for the caller; the caller's ACS identity is created on first use.

        Repeat callers cost one Table read and one ACS call; a first call costs one read,
        a claim insert, one createUserAndToken and the mapping insert.
        """
        scopes = self._resolve_scopes(request.scopes)
        minutes = request.expires_in_minutes or self._settings.token_lifetime_minutes
        started = time.monotonic()  # before the read: the deadline covers what it saw
        record = await self._store.get_user(caller.user_id)
        if record is None:
            return await self._first_token(caller.user_id, scopes, minutes)
        return await self._token_for(record, scopes, minutes, started)

    async def exchange_teams_token(self, caller: Caller, request: TeamsTokenRequest) -> AcsToken:
        """Teams users get ACS tokens for their own Entra identity, never someone else's."""
        if request.user_id != caller.user_id:
            raise Forbidden("userId must be the caller's own user id")
        token = await self._acs.exchange_teams_token(request.token, request.app_id, request.user_id)
        telemetry.metric("teams_tokens_issued")
        return token

    def _resolve_scopes(self, requested: Sequence[Scope] | None) -> tuple[Scope, ...]:
        if requested is None:
            return self._settings.default_scopes
        for scope in requested:
            if scope not in self._settings.allowed_scopes:
                allowed = ", ".join(sorted(s.value for s in self._settings.allowed_scopes))
                raise Forbidden(f"scope '{scope.value}' is not allowed for this service; "
                                f"allowed scopes: {allowed}")
        return tuple(dict.fromkeys(requested))

    async def _token_for(self, record: UserRecord, scopes: tuple[Scope, ...], minutes: int,
                         started: float, *, heal: bool = True) -> IssuedToken:
        """Issue for a row read at ``started``. The whole issuance ends by the deadline
        (``issue_deadline_seconds``), or the token is dropped: a delete's delayed revoke
        relies on no caller receiving a token after it (docs/protocol.md)."""
        if record.state is not UserState.ACTIVE or not record.has_identity:
            raise UserDeleted("this user is deleted; tokens are no longer issued")
        remaining = started + self._issue_deadline - time.monotonic()
        if remaining <= 0:
            raise Unavailable("the token request took too long; retry", retry_after=1)
        try:
            token = await _within(
                self._acs.get_token(record.acs_user_id, scopes, minutes), remaining)
        except asyncio.TimeoutError:
            raise Unavailable("ACS did not answer in time; retry", retry_after=1) from None
        except AcsIdentityNotFound:
            telemetry.event("acs_identity_missing", logging.ERROR,
                            user=telemetry.user_ref(record.user_id), acsUserId=record.acs_user_id)
            if not heal:
                raise Unavailable("this user's identity is being repaired; retry",
                                  retry_after=1) from None
            return await self._heal(record, scopes, minutes, started)
        if time.monotonic() > started + self._issue_deadline:
            # Answered just as the deadline passed: a delayed revoke may not cover it.
            raise Unavailable("ACS did not answer in time; retry", retry_after=1)
        telemetry.count("tokens_issued", first=False)  # hot path: summed per second
        return IssuedToken(record.acs_user_id, token.token, token.expires_on, scopes)

    async def _heal(self, record: UserRecord, scopes: tuple[Scope, ...], minutes: int,
                    started: float) -> IssuedToken:
        """An active row whose identity ACS no longer knows (a compensated first token
        whose delayed insert landed after all; an operator's delete): give the user a
        fresh identity, recorded by an ETag-conditional replace so that concurrent
        healers, a delete or a restore agree on one row (docs/protocol.md)."""
        acs_user_id, token = await self._acs.create_user_and_token(scopes, minutes)
        telemetry.event("acs_identity_created", user=telemetry.user_ref(record.user_id),
                        acsUserId=acs_user_id, healed=True)
        try:
            await self._store.replace_user(
                replace(record, acs_user_id=acs_user_id, created_at=self._clock.now()))
        except PreconditionFailed:
            # Another request healed, deleted or restored the row first: ours goes.
            await self._discard(acs_user_id)
            current = await self._store.get_user(record.user_id)
            if current is None:
                raise Unavailable("the user changed; retry", retry_after=1) from None
            return await self._token_for(current, scopes, minutes, started, heal=False)
        except Unavailable:
            await self._discard(acs_user_id)
            raise
        self._checkpoint("heal.recorded")
        if time.monotonic() > started + self._issue_deadline:
            raise Unavailable("the token request took too long; retry", retry_after=1)
        telemetry.metric("identities_healed")
        telemetry.count("tokens_issued", first=False)
        return IssuedToken(acs_user_id, token.token, token.expires_on, scopes)

    async def _first_token(self, user_id: str, scopes: tuple[Scope, ...],
                           minutes: int) -> IssuedToken:
        """Create the user's one ACS identity, or wait for the request that is creating it."""
        deadline = time.monotonic() + CREATION_WAIT_SECONDS
        delay = 0.02
        while True:
            claim = await self._claim(user_id)
            if claim is not None:
                return await self._create(claim, scopes, minutes)
            await self._clock.sleep(delay)
            delay = min(delay * 2, 0.4)
            started = time.monotonic()
            record = await self._store.get_user(user_id)
            if record is not None:
                return await self._token_for(record, scopes, minutes, started)
            if time.monotonic() > deadline:
                raise Unavailable("this user's identity is being created; retry shortly",
                                  retry_after=1)

    async def _claim(self, user_id: str) -> Claim | None:
        """Win the right to create ``user_id``'s identity, or ``None`` if another live
        request holds it. An expired claim (its creator died or stalled) is taken over."""
        now = self._clock.now()
        mine = Claim(user_id, now + timedelta(seconds=self._settings.create_lease_seconds),
                     owner=uuid.uuid4().hex)
        try:
            return await self._store.insert_claim(mine)
        except StoreConflict:
            pass
        existing = await self._store.get_claim(user_id)
        if existing is not None and existing.owner == mine.owner:
            return existing  # our insert landed; only its answer was lost
        if existing is not None and existing.lease_until > now:
            return None
        try:
            if existing is None:
                return await self._store.insert_claim(mine)
            return await self._store.replace_claim(replace(mine, etag=existing.etag))
        except (StoreConflict, PreconditionFailed):
            return None

    async def _create(self, claim: Claim, scopes: tuple[Scope, ...], minutes: int) -> IssuedToken:
        self._checkpoint("first_token.claimed")
        telemetry.current_user.set(telemetry.user_ref(claim.user_id))  # for the adapter's logs
        try:
            acs_user_id, token = await self._acs.create_user_and_token(scopes, minutes)
        except ServiceError:
            # Nothing was recorded (and for an error answer, nothing created): free the
            # claim so the user's retry need not wait out the lease.
            with contextlib.suppress(ServiceError):
                await self._store.delete_claim(claim)
            raise
        # The identity exists only in this process until the insert below lands; this line
        # is its record of last resort should the process die right here.
        telemetry.event("acs_identity_created", user=telemetry.user_ref(claim.user_id),
                        acsUserId=acs_user_id)
        self._checkpoint("first_token.created")
        record = UserRecord(claim.user_id, acs_user_id, UserState.ACTIVE, self._clock.now())
        try:
            await self._insert_created(record)
        except StoreConflict:
            read_at = time.monotonic()
            winner = await self._store.get_user(claim.user_id)
            if winner is None or winner.acs_user_id != acs_user_id:
                # Our lease lapsed and another request recorded an identity first: ours goes.
                await self._discard(acs_user_id)
                if winner is None:
                    raise Unavailable("identity creation raced; retry", retry_after=1) from None
                # A tombstone (deleted while we created) answers 410 here.
                return await self._token_for(winner, scopes, minutes, read_at)
            # Else the row is ours: an insert retried after its first answer was lost.
        self._checkpoint("first_token.recorded")
        telemetry.metric("identities_created")
        telemetry.metric("tokens_issued", first=True)
        return IssuedToken(acs_user_id, token.token, token.expires_on, scopes)

    async def _insert_created(self, record: UserRecord) -> None:
        """Record a fresh identity, retrying briefly; if storage stays down, delete the
        identity rather than leak it, and tell the caller to retry."""
        for attempt in range(3):
            try:
                await self._store.insert_user(record)
                return
            except Unavailable:
                if attempt < 2:
                    await self._clock.sleep(0.2 * 2 ** attempt)
        await self._discard(record.acs_user_id)
        raise Unavailable("storage is unavailable; retry shortly")

    async def _discard(self, acs_user_id: str) -> None:
        try:
            await self._acs.delete_user(acs_user_id)
            telemetry.event("acs_identity_discarded", acsUserId=acs_user_id)
        except AcsIdentityNotFound:
            pass
        except ServiceError:
            telemetry.event("acs_identity_orphaned", logging.ERROR, acsUserId=acs_user_id)
            raise

    # -- mapping, revocation, deletion ---------------------------------------------------

    async def get_user(self, user_id: str) -> UserRecord:
        record = await self._store.get_user(user_id)
        if record is None:
            raise NotFound("no ACS identity exists for this user")
        return record

    async def revoke(self, user_id: str) -> UserRecord:
        """Invalidate every token issued so far; tokens issued later work."""
        record = await self.get_user(user_id)
        if record.state is not UserState.ACTIVE:
            raise UserDeleted("this user is deleted; its tokens are already revoked")
        try:
            await self._acs.revoke_tokens(record.acs_user_id)
        except AcsIdentityNotFound:
            raise UserDeleted("this user's ACS identity no longer exists") from None
        telemetry.metric("revocations")
        return record

    async def delete(self, user_id: str) -> UserRecord:
        """Revoke at once, revoke again once every issuance in flight has ended, and
        schedule the identity's purge after the grace period.

        A user with no row but a creation claim (a first token in flight) gets a
        tombstone row, which the creation honours. Repeating a delete (a client retry,
        a duplicate event) finishes whatever an interrupted one left undone and never
        moves the purge time.
        """
        for _ in range(3):
            record = await self._store.get_user(user_id)
            if record is None:
                tombstone = await self._tombstone(user_id)
                if tombstone is None:
                    continue  # the creation recorded its row first: delete that
                return tombstone
            if record.state is UserState.PURGING:
                return record
            if record.state is UserState.DELETING:
                assert record.purge_at is not None
                await self._store.put_purge_entry(PurgeEntry(user_id, record.purge_at))
                await self._revoke_twice(record)
                return record
            due = self._purge_due()
            await self._store.put_purge_entry(PurgeEntry(user_id, due))
            self._checkpoint("delete.indexed")
            try:
                marked = await self._store.replace_user(
                    replace(record, state=UserState.DELETING, purge_at=due))
            except PreconditionFailed:
                continue
            self._checkpoint("delete.marked")
            await self._revoke_twice(marked)
            self._checkpoint("delete.revoked")
            telemetry.metric("deletions")
            return marked
        raise Conflict("the user changed while being deleted; retry")

    def _purge_due(self) -> datetime:
        return _whole_seconds(self._clock.now()) + timedelta(
            minutes=self._settings.deletion_grace_minutes)

    async def _tombstone(self, user_id: str) -> UserRecord | None:
        """Delete a user whose first identity may be being created right now.

        Without a claim there is nothing to delete (404). With one, insert a `deleting`
        row with no identity: if the creator's insert comes later it conflicts, and the
        creator discards its identity and answers 410; if the creator's row came first,
        this insert conflicts and the caller deletes that row as usual (``None``)."""
        if await self._store.get_claim(user_id) is None:
            raise NotFound("no ACS identity exists for this user")
        # Kept at least two creation leases, so that even with a zero grace period the
        # purge cannot remove the tombstone before the creation it fences has ended.
        due = max(self._purge_due(), _whole_seconds(self._clock.now()) + timedelta(
            seconds=2 * self._settings.create_lease_seconds))
        await self._store.put_purge_entry(PurgeEntry(user_id, due))
        try:
            tombstone = await self._store.insert_user(
                UserRecord(user_id, "", UserState.DELETING, self._clock.now(), due))
        except StoreConflict:
            return None
        self._checkpoint("delete.tombstoned")
        telemetry.metric("deletions")
        return tombstone

    async def _revoke_twice(self, record: UserRecord) -> None:
        """Schedule the delayed revoke, then revoke now. The schedule comes first so
        that a delete that returns has both; a failure to schedule fails the delete
        (503), and its retry repeats both."""
        if not record.has_identity:
            return
        await self._scheduler.revoke_later(record.user_id,
                                           revoke_delay_seconds(self._settings))
        self._checkpoint("delete.scheduled")
        await self._revoke_quietly(record)

    async def revoke_after_delete(self, user_id: str) -> str:
        """The delayed revoke (queue trigger): every token of a still-deleted user dies,
        including any whose issuance was in flight during the delete. A restored user is
        left alone; a purged one has no identity left. Failures raise, so the message is
        retried (and after five tries moved to the poison queue)."""
        record = await self._store.get_user(user_id)
        if record is None or record.state is UserState.ACTIVE or not record.has_identity:
            return "skipped"
        await self._revoke_quietly(record)
        telemetry.metric("delayed_revocations")
        return "revoked"

    async def restore(self, user_id: str) -> UserRecord:
        """Undo a delete within the grace period, keeping the same ACS identity."""
        for _ in range(3):
            record = await self.get_user(user_id)
            if record.state is UserState.ACTIVE:
                return record
            if record.state is UserState.PURGING:
                raise Conflict("this user is being purged and can no longer be restored")
            if not record.has_identity:
                raise Conflict("this user was deleted before an identity was created; "
                               "there is nothing to restore")
            try:
                restored = await self._store.replace_user(
                    replace(record, state=UserState.ACTIVE, purge_at=None))
            except PreconditionFailed:
                continue
            self._checkpoint("restore.marked")
            telemetry.metric("restores")
            return restored
        raise Conflict("the user changed while being restored; retry")

    async def _revoke_quietly(self, record: UserRecord) -> None:
        if not record.has_identity:
            return
        with contextlib.suppress(AcsIdentityNotFound):
            await self._acs.revoke_tokens(record.acs_user_id)

    # -- events --------------------------------------------------------------------------

    async def apply_event(self, event: UserEvent) -> str:
        """Apply a lifecycle event; returns what happened. Events for unknown users are
        acknowledged (there is nothing to revoke); transient failures propagate so that
        Event Grid retries."""
        try:
            if event.action is EventAction.REVOKE:
                await self.revoke(event.user_id)
                return "revoked"
            await self.delete(event.user_id)
            return "deleted"
        except NotFound:
            return "no_mapping"
        except UserDeleted:
            return "already_deleted"

    # -- purge ---------------------------------------------------------------------------

    async def purge(self) -> PurgeReport:
        """Delete the ACS identity and mapping of every user whose grace period is over.

        Reads only the purge index (users due now) and expired creation claims, never
        the active users; bounded in count, time, concurrency and ACS delete rate.
        """
        report = PurgeReport()
        now = self._clock.now()
        batch = self._settings.purge_batch_size
        entries = list(await self._store.due_purge_entries(now, batch + 1))
        report.more_due = len(entries) > batch
        entries = entries[:batch]
        report.scanned = len(entries)
        limiter = _RateLimiter(self._settings.acs_delete_limit_per_30s * PURGE_RATE_SHARE / 30.0,
                               self._clock)
        gate = asyncio.Semaphore(PURGE_CONCURRENCY)
        deadline = time.monotonic() + PURGE_TIME_BUDGET_SECONDS

        async def run(entry: PurgeEntry) -> None:
            async with gate:
                if time.monotonic() > deadline:
                    report.more_due = True
                    return
                await self._purge_one(entry, limiter, report)

        await asyncio.gather(*(run(entry) for entry in entries))
        for claim in await self._store.expired_claims(now, batch):
            try:
                await self._store.delete_claim(claim)
                report.stale_claims_cleared += 1
            except (PreconditionFailed, Unavailable):
                continue
        telemetry.metric("purged", report.purged)
        telemetry.event("purge_run", **report.as_dict())
        return report

    async def _purge_one(self, entry: PurgeEntry, limiter: _RateLimiter,
                         report: PurgeReport) -> None:
        try:
            record = await self._store.get_user(entry.user_id)
            if (record is None or record.state is UserState.ACTIVE
                    or record.purge_at != entry.due):
                # Restored, re-deleted with another due time, or already purged.
                await self._store.delete_purge_entry(entry)
                report.skipped += 1
                return
            if record.state is UserState.DELETING:
                record = await self._store.replace_user(replace(record, state=UserState.PURGING))
                self._checkpoint("purge.marked")
            await self._delete_identity(record, limiter, report)
            self._checkpoint("purge.acs_deleted")
            # The old creation claim goes first, while the row still turns requests away,
            # so that a returning user can claim a fresh identity at once.
            await self._store.delete_claim(Claim(record.user_id, record.created_at))
            await self._store.delete_user(record)
            self._checkpoint("purge.row_deleted")
            await self._store.delete_purge_entry(entry)
            report.purged += 1
            telemetry.event("user_purged", user=telemetry.user_ref(record.user_id),
                            acsUserId=record.acs_user_id)
        except PreconditionFailed:
            report.skipped += 1
        except Throttled:
            report.throttled += 1
            telemetry.metric("throttled", operation="purge")
        except ServiceError as exc:
            report.failed += 1
            telemetry.event("purge_failed", logging.WARNING,
                            user=telemetry.user_ref(entry.user_id), error=exc.code)

    async def _delete_identity(self, record: UserRecord, limiter: _RateLimiter,
                               report: PurgeReport) -> None:
        if not record.has_identity:
            return  # a tombstone: its creation was discarded
        for attempt in range(2):
            await limiter.acquire()
            try:
                await self._acs.delete_user(record.acs_user_id)
                return
            except AcsIdentityNotFound:
                report.already_gone += 1
                return
            except Throttled as exc:
                if attempt:
                    raise
                report.throttled += 1
                limiter.pause(float(exc.retry_after or 1))


class _RateLimiter:
    """Evenly spaced start times at ``rate`` per second, so that no 30 s window of the
    ACS limit is ever exceeded by the purge alone."""

    def __init__(self, rate: float, clock: Clock) -> None:
        self._interval = 1.0 / max(rate, 1e-6)
        self._next = time.monotonic()
        self._clock = clock
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            await self._clock.sleep(slot - now)

    def pause(self, seconds: float) -> None:
        self._next = max(self._next, time.monotonic() + seconds)


if sys.version_info >= (3, 11):
    async def _within(call: Awaitable[AcsToken], seconds: float) -> AcsToken:
        """``call`` or ``asyncio.TimeoutError`` after ``seconds``; ``asyncio.timeout``
        adds no task per call (``wait_for`` on 3.11 costs ~60 us on the token path)."""
        async with asyncio.timeout(seconds):
            return await call
else:  # pragma: no cover - Python 3.10
    async def _within(call: Awaitable[AcsToken], seconds: float) -> AcsToken:
        return await asyncio.wait_for(call, seconds)


def _whole_seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)
