"""Fixtures for the reliability suite: function_app.py served over real HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def host_env(azurite: Any, issuer: Any, acs: Any, table_name: str) -> dict[str, str]:
    return {
        "COMMUNICATION_SERVICES_CONNECTION_STRING": acs.connection_string,
        "IDENTITY_TABLE_CONNECTION": azurite.connection_string,
        "IDENTITY_TABLE_NAME": table_name,
        "AUTH_ISSUER": issuer.issuer,
        "AUTH_AUDIENCE": issuer.audience,
        "ALLOWED_SCOPES": "chat,voip,chat.join",
        "DEFAULT_SCOPES": "chat,voip",
        "DELETION_GRACE_MINUTES": "60",
        "PURGE_SCHEDULE": "0 0 0 1 1 *",
        "FUNCTIONS_WORKER_RUNTIME": "python",
    }


def start_host(azurite: Any, issuer: Any, acs: Any, *, log_level: str = "INFO",
               **extra: str) -> Any:
    from localdev.host import HostProcess

    table_name = "h" + uuid.uuid4().hex[:20]
    env = {**host_env(azurite, issuer, acs, table_name), **extra}
    host = HostProcess(REPO_ROOT, env=env, timers=False,
                       extra_args=["--log-level", log_level])
    host.start()
    host.table_name = table_name  # type: ignore[attr-defined]
    return host


@pytest.fixture(scope="module")
def http_app(azurite: Any, issuer: Any, acs: Any) -> Iterator[Any]:
    """function_app.py behind localdev.host, against the session's Azurite, emulator and
    issuer, with its own table (shared by the tests of one module)."""
    acs.reset()
    host = start_host(azurite, issuer, acs)
    try:
        yield host
    finally:
        host.cleanup()
