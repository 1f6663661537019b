"""Helpers shared by the reliability tests: table access, invariant checks, crash hooks."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from localdev.invariants import Report, check

ADMIN = "TokenService.Admin"


class ProcessDied(BaseException):
    """Raised by a checkpoint hook: a BaseException, so that no ``except Exception`` in
    the app can turn it into a response; the invocation dies mid-protocol, as the process
    would."""


class DieAt:
    """A checkpoint hook that kills the invocation once, at ``step``; records every step."""

    def __init__(self, step: str) -> None:
        self.step = step
        self.armed = True
        self.seen: list[str] = []

    def __call__(self, step: str) -> None:
        self.seen.append(step)
        if self.armed and step == self.step:
            self.armed = False
            raise ProcessDied(step)


def table_client() -> Any:
    from azure.data.tables import TableClient

    return TableClient.from_connection_string(os.environ["IDENTITY_TABLE_CONNECTION"],
                                              os.environ["IDENTITY_TABLE_NAME"])


async def invariants(emulator: Any, *, tokens: Iterable[tuple[str, bool]] = (),
                     previous: Report | None = None, grace_minutes: float | None = None,
                     table: Any = None) -> Report:
    """The invariant report for the current test's table (run off the event loop)."""
    tokens = list(tokens)

    def run() -> Report:
        client = table if table is not None else table_client()
        return check(client, emulator, tokens=tokens, previous=previous,
                     grace_minutes=grace_minutes)

    return await asyncio.get_running_loop().run_in_executor(None, run)


def expire_claims() -> int:
    """Move every creation claim's lease into the past (as if its creator died long ago)."""
    from azure.data.tables import UpdateMode

    past = (datetime.now(timezone.utc) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    count = 0
    with table_client() as client:
        for entity in client.query_entities("PartitionKey eq '~claims'"):
            entity["LeaseUntil"] = past
            client.update_entity(entity, mode=UpdateMode.REPLACE)
            count += 1
    return count


def rows(partition: str | None = None) -> list[dict[str, Any]]:
    from localdev.invariants import read_rows

    found = read_rows(table_client())
    return [r for r in found if partition is None or r["PartitionKey"] == partition]


def user_rows() -> dict[str, dict[str, Any]]:
    return {r["UserId"]: r for r in rows() if r["RowKey"] == "user"}


async def purge() -> None:
    """One run of the purge timer function, as the worker invokes it."""
    from tests.calls import run_timer

    await run_timer("purge_deleted_users")


def send(app: Any, method: str, path: str, *, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    """One raw request (the path is sent byte for byte, no client-side normalisation)."""
    parts = urlsplit(app.base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if body is not None:
            all_headers["Content-Length"] = str(len(body))
        for name, value in all_headers.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        raw = response.read()
        got = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    payload: Any = raw
    if raw and got.get("content-type", "").startswith("application/json"):
        payload = json.loads(raw)
    return response.status, payload, got


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
