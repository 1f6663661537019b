"""Shared fixtures: the real components every adapter and function test stands on.

Azurite (from ./node_modules), our ACS emulator and our local OIDC issuer are started
once per session; each test gets its own table, so tests never see each other's rows.
The emulator's CA is created, and trusted through SSL_CERT_FILE, when this module is
imported: aiohttp builds its default TLS context (reading SSL_CERT_FILE) at its own import,
and pytest imports this root conftest before any subdirectory's conftest, some of which
import aiohttp.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

SESSION_DIR = Path(tempfile.mkdtemp(prefix="acs-token-tests-"))
ACS_DIR = SESSION_DIR / "acs"


def _trust_session_ca() -> None:
    from localdev import tls

    assert "aiohttp" not in sys.modules, "aiohttp imported before the test CA was trusted"
    tls.ensure_ca(ACS_DIR)
    os.environ["SSL_CERT_FILE"] = str(ACS_DIR / "ca.pem")
    os.environ["REQUESTS_CA_BUNDLE"] = str(ACS_DIR / "ca.pem")


_trust_session_ca()


@pytest.fixture(scope="session")
def azurite() -> Iterator[Any]:
    from localdev.azurite import AzuriteProcess

    with AzuriteProcess() as process:
        yield process


@pytest.fixture(scope="session")
def issuer() -> Iterator[Any]:
    from localdev.issuer import IssuerServer

    with IssuerServer(SESSION_DIR / "issuer") as server:
        yield server


@pytest.fixture(scope="session")
def acs(issuer: Any) -> Iterator[Any]:
    from localdev.acs_emulator import EmulatorProcess

    with EmulatorProcess(ACS_DIR, trusted_jwks_uri=issuer.jwks_uri) as emulator:
        yield emulator


@pytest.fixture
def table_name() -> str:
    return "t" + uuid.uuid4().hex[:20]


@pytest.fixture
async def app_env(azurite: Any, issuer: Any, acs: Any, table_name: str,
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, str]]:
    """Environment for function_app against the real components; a fresh worker per test."""
    from shared import runtime

    acs.reset()
    env = {
        "COMMUNICATION_SERVICES_CONNECTION_STRING": acs.connection_string,
        "IDENTITY_TABLE_CONNECTION": azurite.connection_string,
        "IDENTITY_TABLE_NAME": table_name,
        "AUTH_ISSUER": issuer.issuer,
        "AUTH_AUDIENCE": issuer.audience,
        "ALLOWED_SCOPES": "chat,voip,chat.join",
        "DEFAULT_SCOPES": "chat,voip",
        "DELETION_GRACE_MINUTES": "0",
        "PURGE_SCHEDULE": "0 */5 * * * *",
    }
    for name in ("COMMUNICATION_SERVICES_ENDPOINT", "IDENTITY_TABLE_SERVICE_URI", "AUTH_MODE",
                 "AUTH_JWKS_URI", "EVENT_ACTIONS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    await runtime.reset()
    yield env
    await runtime.reset()
