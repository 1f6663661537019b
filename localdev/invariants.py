"""Check the token service's safety invariants against live state.

Compares what ACS really holds (the emulator's ``GET /_emulator/identities``) with every
row of the mapping table (read with the synchronous ``azure.data.tables`` client) and
reports each violation:

* ``leaked_identity``: a live ACS identity that no mapping row points to;
* ``duplicate_identity``: two rows share one ACS identity;
* ``dangling_row``: an ``active`` or ``deleting`` row whose identity is not live (a user
  who could be restored, or is active, with no identity behind it);
* ``purged_early``: a row in ``purging`` state whose ``PurgeAt`` is still in the future,
  or (given ``previous``, an earlier report) a row that disappeared while its
  ``PurgeAt`` was in the future, or an active row that disappeared sooner than the grace
  period allows;
* ``unindexed_deletion``: a ``deleting``/``purging`` row with no purge index entry for its
  ``PurgeAt`` (it would never be purged). The table is read while the service runs, so
  this one is confirmed before it is reported (see :func:`_confirm_unindexed`);
* ``token_still_valid`` / ``token_invalid``: a ``(token, expected_valid)`` observation
  that ``POST /_emulator/validate`` contradicts.

Usage::

    report = check(table_client, emulator, tokens=[(token, False)])
    assert report.ok, report.summary()

CLI: ``python -m localdev.invariants --stack .localdev/stack.json`` or with explicit
``--table-connection``, ``--table-name``, ``--acs-endpoint`` and ``--ca-file``.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

USERS_ROW = "user"
CLAIMS_PARTITION = "~claims"
PURGE_PARTITION = "~purge"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_DUE_FORMAT = "%Y%m%dT%H%M%SZ"


class Emulator(Protocol):
    """What the checker needs from ACS: ``EmulatorProcess`` or :class:`EmulatorClient`."""

    def identities(self) -> list[str]: ...

    def validate(self, token: str) -> dict[str, Any]: ...


class EmulatorClient:
    """The two control endpoints of a running emulator, by URL."""

    def __init__(self, endpoint: str, ca_file: str | None = None, timeout: float = 10.0) -> None:
        self.endpoint = endpoint.rstrip("/") + "/"
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=ca_file) if ca_file else None

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.endpoint + "_emulator/" + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as resp:
            return json.loads(resp.read() or b"null")

    def identities(self) -> list[str]:
        return list(self._call("GET", "identities")["identities"])

    def validate(self, token: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "validate", {"token": token})
        return result


@dataclass(frozen=True)
class Violation:
    kind: str
    detail: str
    user_id: str | None = None
    acs_user_id: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass(frozen=True)
class Row:
    """One mapping row as the checker saw it."""

    user_id: str
    acs_user_id: str
    state: str
    purge_at: datetime | None


@dataclass
class Report:
    checked_at: datetime
    identities: list[str] = field(default_factory=list)
    rows: dict[str, Row] = field(default_factory=dict)
    claims: int = 0
    purge_entries: int = 0
    tokens_checked: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def of_kind(self, kind: str) -> list[Violation]:
        return [v for v in self.violations if v.kind == kind]

    @property
    def leaked(self) -> list[str]:
        """ACS ids of leaked identities (live in ACS, recorded nowhere)."""
        return [v.acs_user_id for v in self.of_kind("leaked_identity") if v.acs_user_id]

    def as_dict(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for row in self.rows.values():
            states[row.state] = states.get(row.state, 0) + 1
        return {
            "ok": self.ok,
            "checkedAt": self.checked_at.isoformat(),
            "identities": len(self.identities),
            "rows": states,
            "claims": self.claims,
            "purgeEntries": self.purge_entries,
            "tokensChecked": self.tokens_checked,
            "violations": [
                {"kind": v.kind, "detail": v.detail, "userId": v.user_id,
                 "acsUserId": v.acs_user_id}
                for v in self.violations
            ],
        }

    def summary(self) -> str:
        head = (f"{len(self.identities)} live identities, {len(self.rows)} mapping rows, "
                f"{self.claims} claims, {self.purge_entries} purge entries, "
                f"{self.tokens_checked} tokens checked: ")
        if self.ok:
            return head + "all invariants hold"
        lines = [head + f"{len(self.violations)} violation(s)"]
        lines += [f"  - {v}" for v in self.violations]
        return "\n".join(lines)


def _parse(raw: Any) -> datetime | None:
    if not raw:
        return None
    if isinstance(raw, datetime):
        return raw.astimezone(timezone.utc)
    return datetime.strptime(str(raw), _TIME_FORMAT).replace(tzinfo=timezone.utc)


def _table_client(table: Any, table_name: str | None) -> Any:
    if isinstance(table, str):
        from azure.data.tables import TableClient

        if not table_name:
            raise ValueError("table_name is required with a connection string")
        return TableClient.from_connection_string(table, table_name)
    return table


def read_rows(table: Any, table_name: str | None = None) -> list[dict[str, Any]]:
    """Every entity of the table (an empty list if the table does not exist yet)."""
    client = _table_client(table, table_name)
    try:
        return [entity for entity, _ in _read_entities(client)]
    finally:
        if client is not table:
            client.close()


def _read_entities(client: Any) -> list[tuple[dict[str, Any], str | None]]:
    """Every entity with its ETag, in key order: Table Storage returns query results
    sorted by PartitionKey, then RowKey, so every user row (``u...``) is read before the
    ``~claims`` and ``~purge`` partitions (``~`` sorts after every base64url character).
    A listing longer than one page (1,000 entities) is not one snapshot."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return [(dict(entity), entity.metadata.get("etag")) for entity in client.list_entities()]
    except ResourceNotFoundError:
        return []


def check(table: Any, emulator: Emulator, *, table_name: str | None = None,
          tokens: Iterable[tuple[str, bool]] = (), previous: Report | None = None,
          grace_minutes: float | None = None, now: datetime | None = None) -> Report:
    """Check every invariant; ``table`` is a sync ``TableClient`` or a connection string
    (then give ``table_name``). ``previous`` (an earlier report) and ``grace_minutes``
    enable the "never purged before its grace period" checks across time."""
    client = _table_client(table, table_name)
    try:
        return _check(client, emulator, tokens=tokens, previous=previous,
                      grace_minutes=grace_minutes, now=now)
    finally:
        if client is not table:
            client.close()


def _check(client: Any, emulator: Emulator, *, tokens: Iterable[tuple[str, bool]],
           previous: Report | None, grace_minutes: float | None,
           now: datetime | None) -> Report:
    identities = emulator.identities()
    entities = _read_entities(client)
    report = Report(checked_at=now or datetime.now(timezone.utc), identities=identities)
    live = set(identities)
    index: set[tuple[str, datetime | None]] = set()
    users: list[Row] = []
    seen: dict[str, tuple[str, str | None]] = {}
    for entity, etag in entities:
        pk, rk = entity.get("PartitionKey"), entity.get("RowKey")
        if pk == CLAIMS_PARTITION:
            report.claims += 1
        elif pk == PURGE_PARTITION:
            report.purge_entries += 1
            index.add((str(entity.get("UserId")), _parse(entity.get("Due"))))
        elif rk == USERS_ROW:
            users.append(Row(str(entity.get("UserId")), str(entity.get("AcsUserId")),
                             str(entity.get("State")), _parse(entity.get("PurgeAt"))))
            seen[users[-1].user_id] = (str(pk), etag)
        else:
            report.violations.append(Violation(
                "unknown_row", f"unexpected row PartitionKey={pk!r} RowKey={rk!r}"))
    report.rows = {row.user_id: row for row in users}
    _check_mapping(report, users, live, index)
    _confirm_unindexed(report, client, seen)
    _check_history(report, previous, grace_minutes)
    _check_tokens(report, emulator, tokens)
    return report


def _confirm_unindexed(report: Report, client: Any,
                       seen: dict[str, tuple[str, str | None]]) -> None:
    """Drop an ``unindexed_deletion`` that a concurrent purge or restore explains.

    The service writes the index entry before it marks a row ``deleting``, and removes
    it only once the row is gone, active again, or due at another time (docs/protocol.md).
    So a row that stays at the very ETag it had when it was read, from before the index
    was read (key order, :func:`_read_entities`) until after, had its entry throughout,
    and a missing entry is a real violation. A row that changed or vanished meanwhile
    (a purge ran between the two pages of a long listing, say) proves nothing either way:
    the next run judges it.
    """
    from azure.core.exceptions import ResourceNotFoundError

    kept: list[Violation] = []
    for violation in report.violations:
        if violation.kind == "unindexed_deletion" and violation.user_id in seen:
            row = report.rows.get(violation.user_id)
            pk, etag = seen[violation.user_id]
            if row is not None and row.purge_at is not None:
                try:
                    now = client.get_entity(pk, USERS_ROW)
                except ResourceNotFoundError:
                    continue
                if now.metadata.get("etag") != etag:
                    continue
        kept.append(violation)
    report.violations = kept


def _check_mapping(report: Report, users: Sequence[Row], live: set[str],
                   index: set[tuple[str, datetime | None]]) -> None:
    by_identity: dict[str, list[Row]] = {}
    for row in users:
        if row.acs_user_id:  # empty: a tombstone (deleted during its first token)
            by_identity.setdefault(row.acs_user_id, []).append(row)
    for ident in report.identities:
        if ident not in by_identity:
            report.violations.append(Violation(
                "leaked_identity", f"ACS identity {ident} has no mapping row", acs_user_id=ident))
    for ident, rows in by_identity.items():
        if len(rows) > 1:
            names = ", ".join(sorted(repr(r.user_id) for r in rows))
            report.violations.append(Violation(
                "duplicate_identity", f"ACS identity {ident} is mapped by {names}",
                acs_user_id=ident))
    now = report.checked_at
    for row in users:
        tombstone = row.state != "active" and not row.acs_user_id
        if row.state in ("active", "deleting") and row.acs_user_id not in live and not tombstone:
            report.violations.append(Violation(
                "dangling_row", f"{row.state} user {row.user_id!r} points to missing ACS "
                f"identity {row.acs_user_id}", row.user_id, row.acs_user_id))
        if row.state in ("deleting", "purging"):
            if row.purge_at is None:
                report.violations.append(Violation(
                    "unindexed_deletion", f"{row.state} user {row.user_id!r} has no PurgeAt",
                    row.user_id, row.acs_user_id))
            elif (row.user_id, row.purge_at) not in index:
                report.violations.append(Violation(
                    "unindexed_deletion", f"{row.state} user {row.user_id!r} has no purge "
                    f"index entry for {row.purge_at.isoformat()}", row.user_id, row.acs_user_id))
        if row.state == "purging" and row.purge_at is not None and row.purge_at > now:
            report.violations.append(Violation(
                "purged_early", f"user {row.user_id!r} is being purged before its grace "
                f"period ends at {row.purge_at.isoformat()}", row.user_id, row.acs_user_id))
        if row.state not in ("active", "deleting", "purging"):
            report.violations.append(Violation(
                "unknown_state", f"user {row.user_id!r} has state {row.state!r}", row.user_id))


def _check_history(report: Report, previous: Report | None, grace_minutes: float | None) -> None:
    if previous is None:
        return
    now = report.checked_at
    for user_id, before in previous.rows.items():
        after = report.rows.get(user_id)
        if after is not None and after.acs_user_id == before.acs_user_id:
            continue  # still there (possibly in another state)
        if before.state in ("deleting", "purging") and before.purge_at and before.purge_at > now:
            report.violations.append(Violation(
                "purged_early", f"user {user_id!r} was purged before {before.purge_at.isoformat()}",
                user_id, before.acs_user_id))
        elif (before.state == "active" and grace_minutes is not None
              and previous.checked_at + timedelta(minutes=grace_minutes) > now):
            report.violations.append(Violation(
                "purged_early", f"active user {user_id!r} vanished sooner than the "
                f"{grace_minutes:g}-minute grace period allows", user_id, before.acs_user_id))


def _check_tokens(report: Report, emulator: Emulator,
                  tokens: Iterable[tuple[str, bool]]) -> None:
    for token, expected in tokens:
        report.tokens_checked += 1
        result = emulator.validate(token)
        valid = bool(result.get("valid"))
        if valid == expected:
            continue
        ident = result.get("identity")
        if valid:
            report.violations.append(Violation(
                "token_still_valid", f"a token of {ident} still validates but should not "
                f"(it was issued before a revoke or delete)", acs_user_id=ident))
        else:
            report.violations.append(Violation(
                "token_invalid", f"a token of {ident} was expected to be valid but is "
                f"{result.get('reason')}", acs_user_id=ident))


# -- CLI ---------------------------------------------------------------------------------

def _from_stack(path: Path) -> dict[str, str | None]:
    """The table and emulator coordinates from ``localdev.stack``'s stack.json."""
    data = json.loads(path.read_text(encoding="utf-8"))

    def get(*names: str) -> str | None:
        for name in names:
            value = data.get(name)
            if isinstance(value, str) and value:
                return value
        return None

    return {
        "table_connection": get("tableConnectionString", "storageConnectionString"),
        "table_name": get("tableName", "IDENTITY_TABLE_NAME"),
        "acs_endpoint": get("acsEndpoint"),
        "ca_file": get("caFile", "caBundle"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.invariants",
                                     description="Check the token service's invariants.")
    parser.add_argument("--stack", type=Path, help="stack description (JSON) to read from")
    parser.add_argument("--table-connection")
    parser.add_argument("--table-name")
    parser.add_argument("--acs-endpoint", help="the emulator's endpoint URL")
    parser.add_argument("--ca-file", help="CA bundle for the emulator's TLS certificate")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    found: dict[str, str | None] = _from_stack(args.stack) if args.stack else {}
    table_connection = args.table_connection or found.get("table_connection")
    table_name = args.table_name or found.get("table_name") or "AcsIdentities"
    endpoint = args.acs_endpoint or found.get("acs_endpoint")
    ca_file = args.ca_file or found.get("ca_file")
    if not table_connection or not endpoint:
        parser.error("need the table connection string and the emulator endpoint "
                     "(--stack or --table-connection/--acs-endpoint)")
    try:
        report = check(table_connection, EmulatorClient(endpoint, ca_file), table_name=table_name)
    except (OSError, urllib.error.URLError) as exc:
        print(f"cannot reach the stack: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
