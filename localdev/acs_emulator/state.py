"""Identities, revocations and deletions, optionally persisted to a JSON file.

Tokens carry no private claim (real ACS tokens have none), so revocation is keyed by what a
real token has: the identity (``skypeid``) and the issue time (``iat``, whole seconds).  Each
identity keeps a *cutoff*: its tokens with ``iat <= cutoff`` are revoked.  A revoke sets the
cutoff to the current second (or to the newest ``iat`` already issued, if later), and every
token issued after a revoke gets ``iat = cutoff + 1`` at least, so revocation stays exact even
when issue, revoke and issue happen within the same second (such a token's ``iat`` is then up to
a second ahead of the clock).

A revoke may take effect late (``revoke_delay``, like Azure's "up to 15 minutes"): it is then
*pending* until its effective time and the cutoff moves only then.  Tokens issued after the
revoke call are never affected by it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localdev.files import write_json_atomic

log = logging.getLogger("acs_emulator.state")

STATE_VERSION = 2


@dataclass
class Identity:
    """Revocation bookkeeping for one identity."""

    cutoff: int = 0
    last_iat: int = 0
    pending: list[tuple[int, float]] = field(default_factory=list)  # (cutoff, effective at)

    def floor(self) -> int:
        """Newest cutoff, pending or not: a token issued now must be above it."""
        return max([self.cutoff, *(c for c, _ in self.pending)])

    def settle(self, now: float) -> None:
        """Apply the pending revokes whose time has come (delays may differ: any order)."""
        if self.pending and any(at <= now for _, at in self.pending):
            due = [c for c, at in self.pending if at <= now]
            self.pending = [(c, at) for c, at in self.pending if at > now]
            self.cutoff = max(self.cutoff, *due)


class State:
    def __init__(self, resource_id: str, state_file: Path | None = None, debounce: float = 0.2):
        self.resource_id = resource_id
        self.id_prefix = f"8:acs:{resource_id}_"
        self.identities: dict[str, Identity] = {}
        self.deleted: set[str] = set()
        self.state_file = state_file
        self._debounce = debounce
        self._dirty = False
        self._handle: asyncio.TimerHandle | None = None
        if state_file is not None:
            self._load()

    # -- operations -----------------------------------------------------
    def create(self) -> str:
        ident = f"{self.id_prefix}{uuid.uuid4()}"
        self.identities[ident] = Identity()
        self._changed()
        return ident

    def issue_iat(self, ident: str, now: float) -> int | None:
        """The ``iat`` for a token issued now, or None if the identity does not exist."""
        rec = self.identities.get(ident)
        if rec is None:
            return None
        iat = max(int(now), rec.floor() + 1)
        if iat > rec.last_iat:
            rec.last_iat = iat
        return iat

    def revoke(self, ident: str, now: float, delay: float = 0.0) -> bool:
        rec = self.identities.get(ident)
        if rec is None:
            return False
        cutoff = max(int(now), rec.last_iat, rec.floor())
        if delay > 0:
            rec.pending.append((cutoff, now + delay))
        else:
            rec.cutoff = cutoff
        self._changed()
        return True

    def revoked(self, ident: str, iat: int, now: float) -> bool | None:
        """Whether a token of ``ident`` issued at ``iat`` is revoked (None: no such identity)."""
        rec = self.identities.get(ident)
        if rec is None:
            return None
        rec.settle(now)
        return iat <= rec.cutoff

    def delete(self, ident: str) -> bool:
        if self.identities.pop(ident, None) is None:
            return False
        self.deleted.add(ident)
        self._changed()
        return True

    def clear(self) -> None:
        self.identities.clear()
        self.deleted.clear()
        self._changed()

    # -- persistence ----------------------------------------------------
    def _load(self) -> None:
        assert self.state_file is not None
        try:
            data = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"cannot read state file {self.state_file}: {exc}") from exc
        if not isinstance(data, dict) or data.get("version") not in (1, STATE_VERSION):
            raise RuntimeError(f"state file {self.state_file} has an unknown format")
        if data.get("resourceId") not in (None, self.resource_id):
            log.warning(
                "state file %s belongs to resource %s, not %s: ignoring its content",
                self.state_file,
                data.get("resourceId"),
                self.resource_id,
            )
            return
        idents = data.get("identities") or {}
        if data["version"] == 1:  # {id: revocation generation}: revoked ones revoke up to now
            now = int(time.time())
            self.identities = {str(k): Identity(cutoff=now if v else 0) for k, v in idents.items()}
        else:
            self.identities = {
                str(k): Identity(
                    cutoff=int(v[0]),
                    last_iat=int(v[1]),
                    pending=[(int(c), float(at)) for c, at in v[2]],
                )
                for k, v in idents.items()
            }
        self.deleted = {str(x) for x in data.get("deleted") or []}

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "resourceId": self.resource_id,
            "identities": {
                k: [r.cutoff, r.last_iat, [list(p) for p in r.pending]]
                for k, r in self.identities.items()
            },
            "deleted": sorted(self.deleted),
        }

    def _changed(self) -> None:
        if self.state_file is None:
            return
        self._dirty = True
        if self._handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._handle = loop.call_later(self._debounce, self._timer_flush)

    def _timer_flush(self) -> None:
        self._handle = None
        try:
            self.flush()
        except OSError:
            log.exception("writing state file failed")

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self.state_file is None or not self._dirty:
            return
        path = self.state_file
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, self.snapshot(), compact=True)
        self._dirty = False
