"""Typed values passed between the layers; raw dicts exist only at the HTTP and SDK edges."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Scope(str, enum.Enum):
    """The token scopes ACS Identity accepts (api-version 2023-10-01)."""

    CHAT = "chat"
    VOIP = "voip"
    CHAT_JOIN = "chat.join"
    CHAT_JOIN_LIMITED = "chat.join.limited"
    VOIP_JOIN = "voip.join"


class UserState(str, enum.Enum):
    """Life cycle of a mapping row: active -> deleting (grace) -> purging -> row removed.

    ``purging`` exists so that a restore can never race the purge: once the purge has
    claimed the row it will delete the ACS identity, so restore refuses that state.
    """

    ACTIVE = "active"
    DELETING = "deleting"
    PURGING = "purging"


class EventAction(str, enum.Enum):
    REVOKE = "revoke"
    DELETE = "delete"


class AuthMode(str, enum.Enum):
    JWT = "jwt"
    EASYAUTH = "easyauth"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated principal: the app user it speaks for, and whether it is admin."""

    user_id: str
    is_admin: bool = False


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """What a caller asked for; ``None`` means "use the configured default"."""

    scopes: tuple[Scope, ...] | None = None
    expires_in_minutes: int | None = None


@dataclass(frozen=True, slots=True)
class AcsToken:
    token: str = field(repr=False)
    expires_on: datetime


@dataclass(frozen=True, slots=True)
class IssuedToken:
    acs_user_id: str
    token: str = field(repr=False)
    expires_on: datetime
    scopes: tuple[Scope, ...]


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One app user's mapping row. ``etag`` is the version it was read at."""

    user_id: str
    acs_user_id: str
    state: UserState
    created_at: datetime
    purge_at: datetime | None = None
    etag: str | None = None

    @property
    def has_identity(self) -> bool:
        """False for a tombstone: a user deleted while (or before) their first identity
        was being created, so that the creation can never make them active."""
        return bool(self.acs_user_id)


@dataclass(frozen=True, slots=True)
class Claim:
    """A first-token creation in flight for ``user_id``; its lease bounds how long the
    creator may take before another request may take over (see docs/protocol.md)."""

    user_id: str
    lease_until: datetime
    etag: str | None = None
    #: Random per attempt, so a request whose insert answer was lost knows the claim is its own.
    owner: str = ""


@dataclass(frozen=True, slots=True)
class PurgeEntry:
    """An index row: user ``user_id`` is due for purge at ``due``."""

    user_id: str
    due: datetime
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class UserEvent:
    """A lifecycle event reduced to what the service acts on."""

    action: EventAction
    user_id: str
    event_type: str
    event_id: str


@dataclass(frozen=True, slots=True)
class TeamsTokenRequest:
    token: str = field(repr=False)
    app_id: str
    user_id: str


@dataclass(slots=True)
class PurgeReport:
    """What one purge run did; mutable because the run fills it in as it goes."""

    scanned: int = 0
    purged: int = 0
    already_gone: int = 0
    skipped: int = 0
    stale_claims_cleared: int = 0
    throttled: int = 0
    failed: int = 0
    more_due: bool = False

    def as_dict(self) -> dict[str, int | bool]:
        return {
            "scanned": self.scanned,
            "purged": self.purged,
            "alreadyGone": self.already_gone,
            "skipped": self.skipped,
            "staleClaimsCleared": self.stale_claims_cleared,
            "throttled": self.throttled,
            "failed": self.failed,
            "moreDue": self.more_due,
        }
