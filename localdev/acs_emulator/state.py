"""Identities, revocation generations and deletions, optionally persisted to a JSON file.

Revocation is exact: every identity has a revocation generation (an integer),
embedded in each token at issuance.  Revoking bumps the generation, so tokens
issued before a revoke carry an older generation and are invalid, tokens issued
after carry the new one and are valid, whatever the clock says.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path
from typing import Any

from localdev.files import write_json_atomic

log = logging.getLogger("acs_emulator.state")

STATE_VERSION = 1


class State:
    def __init__(self, resource_id: str, state_file: Path | None = None, debounce: float = 0.2):
        self.resource_id = resource_id
        self.id_prefix = f"8:acs:{resource_id}_"
        self.identities: dict[str, int] = {}  # id -> revocation generation
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
        self.identities[ident] = 0
        self._changed()
        return ident

    def generation(self, ident: str) -> int | None:
        return self.identities.get(ident)

    def revoke(self, ident: str) -> bool:
        gen = self.identities.get(ident)
        if gen is None:
            return False
        self.identities[ident] = gen + 1
        self._changed()
        return True

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
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
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
        self.identities = {str(k): int(v) for k, v in idents.items()}
        self.deleted = {str(x) for x in data.get("deleted") or []}

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "resourceId": self.resource_id,
            "identities": self.identities,
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
