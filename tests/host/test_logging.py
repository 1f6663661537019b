"""Per-invocation log lines carry the invocation id."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from localdev.host import InvocationIdFilter, current_invocation_id

Client = TestClient[Any, Any]


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    got: list[logging.LogRecord] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record)

    handler = ListHandler(logging.INFO)
    handler.addFilter(InvocationIdFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield got
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.mark.parametrize("path", ["/api/context/async", "/api/context/sync"])
async def test_invocation_logs_carry_the_id(
    client: Client, records: list[logging.LogRecord], path: str
) -> None:
    data = await (await client.get(path)).json()
    inv = data["invocation_id"]
    fname = data["function_name"]
    mine = [r for r in records if getattr(r, "invocation_id", None) == inv]
    messages = [r.getMessage() for r in mine]
    assert (
        messages[0] == f"Executing 'Functions.{fname}' (Reason='This function was "
        f"programmatically called via the host APIs.', Id={inv})"
    )
    assert any(
        m.startswith("user log line") or m.startswith("sync user log line") for m in messages
    )
    user = next(r for r in mine if r.name == "sample_app")
    assert user.invocation_id == inv  # type: ignore[attr-defined]
    assert messages[-1].startswith(f"Executed 'Functions.{fname}' (Succeeded, Id={inv}, Duration=")
    assert messages[-1].endswith("ms)")


async def test_failed_invocation_log(client: Client, records: list[logging.LogRecord]) -> None:
    assert (await client.get("/api/boom")).status == 500
    failed = [r for r in records if "(Failed, Id=" in r.getMessage()]
    assert len(failed) == 1
    inv = failed[0].invocation_id  # type: ignore[attr-defined]
    assert f"Executed 'Functions.boom' (Failed, Id={inv}, Duration=" in failed[0].getMessage()
    exc = [r for r in records if r.exc_info and getattr(r, "invocation_id", None) == inv]
    assert "secret internal detail" in str(exc[0].exc_info[1])  # type: ignore[index]


def test_no_invocation_outside_functions(records: list[logging.LogRecord]) -> None:
    assert current_invocation_id() is None
    logging.getLogger("x").info("outside")
    assert records[-1].invocation_id == "-"  # type: ignore[attr-defined]
