"""In-memory stand-ins for the service's ports, with the same conditional-write
semantics as the Table adapter (ETags, insert-if-absent). For service unit tests only:
every adapter is tested against the real thing elsewhere."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from shared.errors import AcsIdentityNotFound, PreconditionFailed, StoreConflict, Throttled
from shared.models import AcsToken, Claim, PurgeEntry, Scope, UserRecord


class MemoryStore:
    def __init__(self) -> None:
        self.users: dict[str, UserRecord] = {}
        self.claims: dict[str, Claim] = {}
        self.purge: dict[tuple[datetime, str], PurgeEntry] = {}
        self.reads = 0
        self.writes = 0
        self.entities_read = 0
        self._etags = itertools.count(1)

    def _etag(self) -> str:
        return f'W/"{next(self._etags)}"'

    async def get_user(self, user_id: str) -> UserRecord | None:
        await asyncio.sleep(0)
        self.reads += 1
        found = self.users.get(user_id)
        self.entities_read += found is not None
        return found

    async def insert_user(self, record: UserRecord) -> UserRecord:
        await asyncio.sleep(0)
        self.writes += 1
        if record.user_id in self.users:
            raise StoreConflict("exists")
        stored = replace(record, etag=self._etag())
        self.users[record.user_id] = stored
        return stored

    async def replace_user(self, record: UserRecord) -> UserRecord:
        await asyncio.sleep(0)
        self.writes += 1
        current = self.users.get(record.user_id)
        if current is None or current.etag != record.etag:
            raise PreconditionFailed("changed")
        stored = replace(record, etag=self._etag())
        self.users[record.user_id] = stored
        return stored

    async def delete_user(self, record: UserRecord) -> None:
        await asyncio.sleep(0)
        self.writes += 1
        current = self.users.get(record.user_id)
        if current is None or current.etag != record.etag:
            raise PreconditionFailed("changed")
        del self.users[record.user_id]

    async def get_claim(self, user_id: str) -> Claim | None:
        await asyncio.sleep(0)
        self.reads += 1
        return self.claims.get(user_id)

    async def insert_claim(self, claim: Claim) -> Claim:
        await asyncio.sleep(0)
        self.writes += 1
        if claim.user_id in self.claims:
            raise StoreConflict("exists")
        stored = replace(claim, etag=self._etag())
        self.claims[claim.user_id] = stored
        return stored

    async def replace_claim(self, claim: Claim) -> Claim:
        await asyncio.sleep(0)
        self.writes += 1
        current = self.claims.get(claim.user_id)
        if current is None or current.etag != claim.etag:
            raise PreconditionFailed("changed")
        stored = replace(claim, etag=self._etag())
        self.claims[claim.user_id] = stored
        return stored

    async def delete_claim(self, claim: Claim) -> None:
        await asyncio.sleep(0)
        self.writes += 1
        current = self.claims.get(claim.user_id)
        if claim.etag is None:
            self.claims.pop(claim.user_id, None)
            return
        if current is None or current.etag != claim.etag:
            raise PreconditionFailed("changed")
        del self.claims[claim.user_id]

    async def expired_claims(self, now: datetime, limit: int) -> Sequence[Claim]:
        self.reads += 1
        found = [c for c in self.claims.values() if c.lease_until < now][:limit]
        self.entities_read += len(found)
        return found

    async def put_purge_entry(self, entry: PurgeEntry) -> None:
        await asyncio.sleep(0)
        self.writes += 1
        self.purge[(entry.due, entry.user_id)] = replace(entry, etag=self._etag())

    async def due_purge_entries(self, now: datetime, limit: int) -> Sequence[PurgeEntry]:
        self.reads += 1
        found = [self.purge[k] for k in sorted(self.purge) if k[0] <= now][:limit]
        self.entities_read += len(found)
        return found

    async def delete_purge_entry(self, entry: PurgeEntry) -> None:
        self.writes += 1
        current = self.purge.get((entry.due, entry.user_id))
        if current is not None and (entry.etag is None or current.etag == entry.etag):
            del self.purge[(entry.due, entry.user_id)]

    async def ping(self) -> None:
        return None


class FakeAcs:
    """ACS semantics that matter to the service: identities, revocation, deletion."""

    def __init__(self) -> None:
        self.live: set[str] = set()
        self.deleted: set[str] = set()
        self.revocations: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.throttle_next: dict[str, int] = {}

    def _count(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1
        if self.throttle_next.get(op):
            self.throttle_next[op] -= 1
            raise Throttled(retry_after=1)

    def _token(self, acs_id: str, minutes: int) -> AcsToken:
        expires = datetime.now(timezone.utc) + timedelta(minutes=minutes)
        return AcsToken(f"tok-{acs_id}-{self.revocations.get(acs_id, 0)}", expires)

    async def create_user_and_token(self, scopes: Sequence[Scope],
                                    minutes: int) -> tuple[str, AcsToken]:
        await asyncio.sleep(0)
        self._count("create")
        acs_id = f"8:acs:fake_{uuid.uuid4()}"
        self.live.add(acs_id)
        return acs_id, self._token(acs_id, minutes)

    async def get_token(self, acs_user_id: str, scopes: Sequence[Scope], minutes: int) -> AcsToken:
        await asyncio.sleep(0)
        self._count("issue")
        if acs_user_id not in self.live:
            raise AcsIdentityNotFound("gone")
        return self._token(acs_user_id, minutes)

    async def revoke_tokens(self, acs_user_id: str) -> None:
        await asyncio.sleep(0)
        self._count("revoke")
        if acs_user_id not in self.live:
            raise AcsIdentityNotFound("gone")
        self.revocations[acs_user_id] = self.revocations.get(acs_user_id, 0) + 1

    async def delete_user(self, acs_user_id: str) -> None:
        await asyncio.sleep(0)
        self._count("delete")
        if acs_user_id not in self.live:
            raise AcsIdentityNotFound("gone")
        self.live.discard(acs_user_id)
        self.deleted.add(acs_user_id)

    async def exchange_teams_token(self, token: str, app_id: str, user_id: str) -> AcsToken:
        self._count("exchange")
        return AcsToken("teams-token", datetime.now(timezone.utc) + timedelta(hours=1))


class FakeScheduler:
    """Records delayed revokes; a test runs them when it decides the delay has passed
    (the queue's own delay and retries are tested against Azurite in tests/e2e)."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[str, float]] = []
        self.fail_next = 0

    async def revoke_later(self, user_id: str, delay_seconds: float) -> None:
        await asyncio.sleep(0)
        if self.fail_next:
            self.fail_next -= 1
            from shared.errors import Unavailable

            raise Unavailable("queue down")
        self.scheduled.append((user_id, delay_seconds))

    async def run_due(self, service: object) -> list[str]:
        """Run every scheduled revoke (as the queue trigger would, after the delay)."""
        due, self.scheduled = self.scheduled, []
        return [await service.revoke_after_delete(user_id)  # type: ignore[attr-defined]
                for user_id, _ in due]


class ManualClock:
    """A clock tests move by hand; sleeping yields control but takes no time."""

    def __init__(self, start: datetime | None = None) -> None:
        self.moment = start or datetime(2026, 1, 1, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


class Crash(Exception):
    """Raised by a checkpoint to simulate the process dying between two steps."""


class CrashAt:
    def __init__(self, step: str) -> None:
        self.step = step
        self.armed = True

    def __call__(self, step: str) -> None:
        if self.armed and step == self.step:
            self.armed = False
            raise Crash(step)
