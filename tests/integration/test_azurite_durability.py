"""Azurite keeps what it acknowledged across a clean stop (issue 16, item 5).

Azurite holds its tables in LokiJS and saves them to disk every 5 s
(``autosaveInterval: 5000``, node_modules/azurite/dist/src/table/persistence/
LokiTableMetadataStore.js) and when it closes on SIGINT (both ``azurite`` and
``azurite-table``; only the full ``azurite`` also closes on SIGTERM). So rows written
just before a stop survive only if the stop lets it close. ``kill -9`` loses them; that
case is documented (docs/local-stack.md), not tested: what it loses depends on where the
autosave timer stands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableClient

from localdev.azurite import AzuriteProcess

ROWS = 25


def write_rows(connection_string: str, table: str) -> None:
    with TableClient.from_connection_string(connection_string, table) as client:
        client.create_table()
        for i in range(ROWS):
            client.create_entity({"PartitionKey": "p", "RowKey": f"{i:03d}", "Value": i})


def read_rows(connection_string: str, table: str) -> list[dict[str, Any]]:
    with TableClient.from_connection_string(connection_string, table) as client:
        return [dict(e) for e in client.list_entities()]


@pytest.mark.parametrize("table_only", [True, False], ids=["azurite-table", "azurite"])
def test_rows_written_just_before_a_clean_stop_survive_a_restart(tmp_path: Path,
                                                                 table_only: bool) -> None:
    azurite = AzuriteProcess(location=tmp_path / "data", table_only=table_only)
    with azurite:
        write_rows(azurite.connection_string, "durable")
    # Same ports, same data directory.
    with azurite:
        rows = read_rows(azurite.connection_string, "durable")
    assert sorted(r["Value"] for r in rows) == list(range(ROWS))


def test_the_local_stacks_stop_saves_azurite(tmp_path: Path) -> None:
    """`make run`'s stop path (``Stack.stop``): rows written just before it are on disk."""
    from localdev.stack import Stack

    with Stack(tmp_path / "stack", use_func=False, timers=False) as stack:
        write_rows(stack.table_connection_string, "durable")
        data = stack.azurite_dir
    assert stack.children["azurite"].proc is not None
    assert stack.children["azurite"].proc.returncode == 0  # closed by itself, not killed
    with AzuriteProcess(location=data, table_only=False) as azurite:
        rows = read_rows(azurite.connection_string, "durable")
    assert sorted(r["Value"] for r in rows) == list(range(ROWS))
