"""Indexing the app (the worker's cold start) imports no telemetry SDK and no service SDK.

Metrics are log lines (shared/telemetry.py), so no Application Insights / OpenCensus /
OpenTelemetry package is needed; the Azure SDKs, cryptography (shared/jws.py) and aiohttp
are imported by shared/runtime.py on the first request, never by ``import function_app``
(and PyJWT never: tests/observability/test_auth_imports.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TELEMETRY_SDKS = ("opencensus", "opentelemetry", "applicationinsights", "azure.monitor")
LAZY = ("azure.data", "azure.communication", "azure.identity", "azure.core", "msal", "jwt",
        "cryptography", "aiohttp")

PROBE = """
import json, sys
import function_app
functions = function_app.app.get_functions()
print(json.dumps({"functions": len(functions), "modules": sorted(sys.modules)}))
"""


def _loaded(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]


def test_indexing_imports_no_telemetry_or_service_sdk(tmp_path):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("COMMUNICATION_SERVICES_", "IDENTITY_", "AUTH_", "AZURE_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.pop("PYTHONSTARTUP", None)
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["functions"] >= 12
    assert _loaded(report["modules"], TELEMETRY_SDKS) == []
    assert _loaded(report["modules"], LAZY) == []
    assert "shared.runtime" not in report["modules"] and "shared.service" not in report["modules"]


def test_probe_detects_an_eager_import(tmp_path):
    """The check is not vacuous: the same probe sees what a real import loads."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    probe = "import json, sys, shared.store; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout)
    assert _loaded(modules, ("azure.data",)) and _loaded(modules, ("azure.core",))
