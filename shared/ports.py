"""The interfaces the service depends on. Adapters (``store``, ``acs``) implement them over
the Azure SDKs; tests implement them in memory. Nothing here imports ``azure``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from .models import AcsToken, Claim, PurgeEntry, Scope, UserRecord


class IdentityStore(Protocol):
    """The user -> ACS identity mapping, with conditional writes.

    Writes that lose a race raise :class:`~shared.errors.StoreConflict` (insert found a
    row) or :class:`~shared.errors.PreconditionFailed` (ETag no longer matches, or the
    row is gone). Unreachable storage raises :class:`~shared.errors.Unavailable`.
    Returned records carry the ETag they were written or read at.
    """

    async def get_user(self, user_id: str) -> UserRecord | None: ...
    async def insert_user(self, record: UserRecord) -> UserRecord: ...
    async def replace_user(self, record: UserRecord) -> UserRecord: ...
    async def delete_user(self, record: UserRecord) -> None: ...

    async def get_claim(self, user_id: str) -> Claim | None: ...
    async def insert_claim(self, claim: Claim) -> Claim: ...
    async def replace_claim(self, claim: Claim) -> Claim: ...
    async def delete_claim(self, claim: Claim) -> None:
        """Delete if the ETag still matches; with no ETag, delete whatever is there."""

    async def expired_claims(self, now: datetime, limit: int) -> Sequence[Claim]: ...

    async def put_purge_entry(self, entry: PurgeEntry) -> None: ...
    async def due_purge_entries(self, now: datetime, limit: int) -> Sequence[PurgeEntry]: ...
    async def delete_purge_entry(self, entry: PurgeEntry) -> None:
        """Delete the entry if its ETag still matches (any version without one);
        a changed or missing entry is left alone, silently."""

    async def ping(self) -> None: ...


class AcsGateway(Protocol):
    """The four ACS Identity operations we use, plus the Teams exchange.

    Raises :class:`~shared.errors.AcsIdentityNotFound` for an unknown identity,
    :class:`~shared.errors.Throttled` on 429 after bounded retries, and
    :class:`~shared.errors.Unavailable` when ACS is unreachable or failing.
    """

    async def create_user_and_token(
        self, scopes: Sequence[Scope], minutes: int) -> tuple[str, AcsToken]: ...
    async def get_token(
        self, acs_user_id: str, scopes: Sequence[Scope], minutes: int) -> AcsToken: ...
    async def revoke_tokens(self, acs_user_id: str) -> None: ...
    async def delete_user(self, acs_user_id: str) -> None: ...
    async def exchange_teams_token(self, token: str, app_id: str, user_id: str) -> AcsToken: ...


class RevokeScheduler(Protocol):
    """Durably schedules a second revoke of a deleted user's tokens (docs/protocol.md,
    "Delete"): it must survive the process that schedules it, so that a token whose
    issuance was in flight during the delete dies once that issuance has ended."""

    async def revoke_later(self, user_id: str, delay_seconds: float) -> None:
        """Run ``TokenService.revoke_after_delete(user_id)`` no earlier than
        ``delay_seconds`` from now; raise :class:`~shared.errors.Unavailable` if the
        schedule could not be recorded."""


class Clock(Protocol):
    def now(self) -> datetime: ...
    async def sleep(self, seconds: float) -> None: ...


class Checkpoint(Protocol):
    """Called between the steps of every multi-step write, by name. A no-op in
    production; crash-injection tests raise from it to kill an operation mid-way."""

    def __call__(self, step: str) -> None: ...
