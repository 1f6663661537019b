"""examples/python/client.py and examples/node/client.mjs, run against the stack."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from .helpers import StackClient

REPO = Path(__file__).resolve().parents[2]


def check_output(client: StackClient, out: str, bearer: str) -> dict[str, Any]:
    assert re.search(r"^ACS user id: 8:acs:\S+$", out, re.MULTILINE), out
    assert re.search(r"^Token expires: \S+$", out, re.MULTILINE), out
    assert re.search(r"^Refreshes: 1$", out, re.MULTILINE), out
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    me = client.call("GET", "/me", bearer).json()
    assert result["acsUserId"] == me["acsUserId"]
    expires = datetime.fromisoformat(result["expiresOn"].replace("Z", "+00:00"))
    assert expires > datetime.now(timezone.utc)
    check = client.validate(result["token"])
    assert check == {"valid": True, "reason": "ok", "identity": me["acsUserId"]}
    return result


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60, check=False)


def test_python_client_from_env(client: StackClient) -> None:
    pytest.importorskip("azure.communication.chat")
    _, bearer = client.new_user()
    proc = run([sys.executable, "examples/python/client.py"],
               {"API_BASE": client.api, "BEARER_TOKEN": bearer})
    assert proc.returncode == 0, proc.stderr
    check_output(client, proc.stdout, bearer)


def test_python_client_from_arguments(client: StackClient) -> None:
    pytest.importorskip("azure.communication.chat")
    _, bearer = client.new_user()
    proc = run([sys.executable, "examples/python/client.py", "--api-base", client.api,
                "--bearer-token", bearer, "--scopes", "chat", "--minutes", "60"],
               {"API_BASE": "", "BEARER_TOKEN": ""})
    assert proc.returncode == 0, proc.stderr
    check_output(client, proc.stdout, bearer)


def test_python_client_reports_service_errors(client: StackClient) -> None:
    pytest.importorskip("azure.communication.chat")
    proc = run([sys.executable, "examples/python/client.py"],
               {"API_BASE": client.api, "BEARER_TOKEN": "not-a-token"})
    assert proc.returncode == 1
    assert "401" in proc.stderr and '"error"' in proc.stderr  # the status and the body
    assert "Traceback" not in proc.stderr and "Exception in thread" not in proc.stderr


def test_python_client_reads_the_banners_names(client: StackClient) -> None:
    """`make run` prints `export API=... TOKEN=...`: pasting them is enough."""
    pytest.importorskip("azure.communication.chat")
    _, bearer = client.new_user()
    proc = run([sys.executable, "examples/python/client.py"],
               {"API_BASE": "", "BEARER_TOKEN": "", "API": client.api, "TOKEN": bearer})
    assert proc.returncode == 0, proc.stderr
    check_output(client, proc.stdout, bearer)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_client_from_env(client: StackClient) -> None:
    if not (REPO / "node_modules" / "@azure" / "communication-common").is_dir():
        pytest.fail("npm packages missing: run make setup")
    _, bearer = client.new_user()
    proc = run(["node", "examples/node/client.mjs"],
               {"API_BASE": client.api, "BEARER_TOKEN": bearer})
    assert proc.returncode == 0, proc.stderr
    check_output(client, proc.stdout, bearer)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_client_from_arguments_and_errors(client: StackClient) -> None:
    _, bearer = client.new_user()
    proc = run(["node", "examples/node/client.mjs", "--api-base", client.api,
                "--bearer-token", bearer, "--scopes", "voip"],
               {"API_BASE": "", "BEARER_TOKEN": ""})
    assert proc.returncode == 0, proc.stderr
    check_output(client, proc.stdout, bearer)

    bad = run(["node", "examples/node/client.mjs"],  # the banner's names work too
              {"API_BASE": "", "BEARER_TOKEN": "", "API": client.api, "TOKEN": "not-a-token"})
    assert bad.returncode == 1
    assert "401" in bad.stderr
