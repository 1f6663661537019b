"""Fixtures for the localdev.host tests: the sample app in-process and out-of-process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from localdev.host import HostKeys, HostProcess, create_host_app, get_runtime, import_function_app

SAMPLE_DIR = Path(__file__).parent / "sample_app"
SAMPLE_ENV = {"SAMPLE_SCHEDULE": "0 */5 * * * *"}


@pytest.fixture(scope="session")
def sample_module() -> ModuleType:
    # A unique module name: never clashes with the project's own function_app.
    return import_function_app(SAMPLE_DIR, module_name="localdev_host_sample_app")


@pytest.fixture
def sample_state(sample_module: ModuleType) -> ModuleType:
    sample_module.EVENTS.clear()
    sample_module.TIMER_CALLS.clear()
    sample_module.ADMIN_INPUTS.clear()
    return sample_module


@pytest.fixture
def host_keys() -> HostKeys:
    return HostKeys.generate()


@pytest_asyncio.fixture
async def client(
    sample_state: ModuleType, host_keys: HostKeys
) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_host_app(sample_state, keys=host_keys, environ=SAMPLE_ENV)
    async with TestClient(TestServer(app)) as c:
        yield c


def runtime_of(client: TestClient[Any, Any]) -> Any:
    return get_runtime(client.server.app)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def host_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    """The real CLI in a subprocess, timers on (every second), settings from a file."""
    tmp = tmp_path_factory.mktemp("hostproc")
    settings = tmp / "local.settings.json"
    settings.write_text(
        json.dumps(
            {
                "IsEncrypted": False,
                "Values": {
                    "SAMPLE_SCHEDULE": "*/1 * * * * *",
                    "FROM_SETTINGS": "file-value",
                    "PRESET_VAR": "file-must-not-win",
                    "FUNCTIONS_WORKER_RUNTIME": "python",
                },
            }
        )
    )
    with HostProcess(
        SAMPLE_DIR,
        port=0,
        env={"PRESET_VAR": "env-wins"},
        settings_file=settings,
        timers=True,
    ) as host:
        yield host
