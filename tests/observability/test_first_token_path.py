"""A fresh worker's first token loads only what a token needs, and leaves the worker's
startup objects out of every later garbage collection.

The probe runs in a new interpreter, as a Functions worker does: asyncio and
azure.functions imported first (the worker's own imports), then ``function_app``
indexed, then ``POST /api/token`` for a new user and once more for the same user, against
Azurite, the ACS emulator and the local issuer. No timing is asserted (that is
`make bench` and `python -m bench.coldstart`); the contract is which modules the token
path imports, and that the first build froze the startup objects (shared/runtime.py,
``_first_build_frozen``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: Modules a token never needs: the other triggers' parsers, the delayed revoke's queue
#: SDK (azure-storage-queue, which brings requests and urllib3), managed identity, the
#: OpenAPI document, and the Protocols the service is typed against (annotations only).
NOT_ON_TOKEN_PATH = (
    "shared.events", "shared.queue", "shared.openapi", "shared.ports",
    "azure.storage", "azure.identity", "msal", "requests", "urllib3",
    "opencensus", "opentelemetry", "azure.monitor",
)

PROBE = """
import asyncio, json, os, sys
import azure.functions as func
import gc
import function_app

functions = {f.get_function_name(): f.get_user_function()
             for f in function_app.app.get_functions()}

async def main():
    statuses = []
    for _ in range(2):  # the first token (creates the identity), then a repeat
        req = func.HttpRequest("POST", "http://localhost/api/token", headers={
            "authorization": "Bearer " + os.environ["PROBE_TOKEN"]}, params={},
            route_params={}, body=b"")
        statuses.append((await functions["issue_token"](req)).status_code)
    from shared import runtime
    await runtime.reset()
    return statuses

statuses = asyncio.run(main())
print(json.dumps({"statuses": statuses, "modules": sorted(sys.modules),
                  "frozen": gc.get_freeze_count(), "gcEnabled": gc.isenabled()}))
"""


def _loaded(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]


def _probe(tmp_path: Path, token: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PROBE_TOKEN": token}
    env.pop("PYTHONSTARTUP", None)
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


async def test_first_token_in_a_fresh_worker_imports_only_the_token_path(
        app_env: dict[str, str], issuer: Any, tmp_path: Path) -> None:
    report = _probe(tmp_path, issuer.mint(sub="cold-path-user", minutes=10))
    assert report["statuses"] == [200, 200]
    modules = report["modules"]
    assert _loaded(modules, NOT_ON_TOKEN_PATH) == []
    # ...while the token path itself really ran in that process:
    assert {"shared.service", "shared.store", "shared.acs", "shared.auth"} <= set(modules)
    assert _loaded(modules, ("azure.data.tables",)) and _loaded(
        modules, ("azure.communication.identity",))


async def test_first_build_freezes_the_startup_objects_and_keeps_the_collector_on(
        app_env: dict[str, str], issuer: Any, tmp_path: Path) -> None:
    report = _probe(tmp_path, issuer.mint(sub="cold-path-gc-user", minutes=10))
    assert report["statuses"] == [200, 200]
    # Every SDK, PyJWT and service object made by the first build is out of the
    # collector's sight (tens of thousands; a bare interpreter holds none frozen)...
    assert report["frozen"] > 10000
    # ...and collection is back on for whatever the requests allocate afterwards.
    assert report["gcEnabled"] is True


FAILED_BUILD_PROBE = """
import asyncio, gc, json
from shared import runtime
from shared.errors import ConfigurationError

async def main():
    try:
        await runtime.get_service()
    except ConfigurationError as exc:
        return exc.message
    return None

error = asyncio.run(main())
print(json.dumps({"error": error, "frozen": gc.get_freeze_count(),
                  "gcEnabled": gc.isenabled()}))
"""


def test_a_failed_first_build_leaves_the_collector_on_and_nothing_frozen(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("COMMUNICATION_SERVICES_", "IDENTITY_", "AUTH_", "AZURE_"))
           and key != "AzureWebJobsStorage"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-c", FAILED_BUILD_PROBE], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "COMMUNICATION_SERVICES_CONNECTION_STRING" in report["error"]
    assert report["gcEnabled"] is True
    # Not frozen: the next request's build (once settings are fixed) freezes what it built.
    assert report["frozen"] == 0
