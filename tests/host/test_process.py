"""The CLI host in a real subprocess (HostProcess), over TCP."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from localdev.host import HostProcess, HostStartError

from .conftest import SAMPLE_DIR


def _get_state(host: HostProcess) -> dict[str, Any]:
    resp = requests.get(host.url("/api/_state"), timeout=10)
    assert resp.status_code == 200
    data: dict[str, Any] = resp.json()
    return data


def test_ready_and_port_reported(host_process: HostProcess) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", host_process.base_url)
    assert not host_process.base_url.endswith(":0")
    status = requests.get(host_process.url("/admin/host/status"), timeout=10).json()
    assert status["state"] == "Running"
    assert host_process.master_key
    assert host_process.function_key
    assert host_process.master_key != host_process.function_key


def test_http_and_keys_over_tcp(host_process: HostProcess) -> None:
    resp = requests.get(host_process.url("/api/hello/proc"), timeout=10)
    assert (resp.status_code, resp.text) == (200, "Hello, proc")
    url = host_process.url("/api/secure/admin")
    assert requests.get(url, timeout=10).status_code == 401
    assert (
        requests.get(url, params={"code": host_process.function_key}, timeout=10).status_code == 401
    )
    ok = requests.get(url, headers={"x-functions-key": host_process.master_key}, timeout=10)
    assert ok.status_code == 200
    fn = requests.get(
        host_process.url("/api/secure/function"),
        params={"code": host_process.function_key},
        timeout=10,
    )
    assert fn.status_code == 200


def test_settings_file_does_not_override_environment(host_process: HostProcess) -> None:
    got = requests.get(host_process.url("/api/settings/FROM_SETTINGS"), timeout=10).json()
    assert got["value"] == "file-value"
    assert Path(got["cwd"]) == SAMPLE_DIR.resolve()  # cwd = app dir
    got = requests.get(host_process.url("/api/settings/PRESET_VAR"), timeout=10).json()
    assert got["value"] == "env-wins"


def test_concurrent_requests_over_tcp(host_process: HostProcess) -> None:
    n = 20
    url = host_process.url(f"/api/concurrency/async?batch=proc&n={n}")
    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(lambda _: requests.get(url, timeout=30), range(n)))
    assert [r.status_code for r in results] == [200] * n


def test_exception_body_is_empty_and_logged(host_process: HostProcess) -> None:
    resp = requests.get(host_process.url("/api/boom"), timeout=10)
    assert resp.status_code == 500
    assert resp.content == b""
    assert "secret internal detail" not in resp.text
    deadline = time.monotonic() + 10
    while "secret internal detail" not in host_process.log_text():
        assert time.monotonic() < deadline, host_process.log_text()[-2000:]
        time.sleep(0.05)


def test_log_lines_tagged_with_invocation_id(host_process: HostProcess) -> None:
    data = requests.get(host_process.url("/api/context/async"), timeout=10).json()
    inv = data["invocation_id"]
    deadline = time.monotonic() + 10
    while f"Executed 'Functions.with_context' (Succeeded, Id={inv}" not in host_process.log_text():
        assert time.monotonic() < deadline, host_process.log_text()[-2000:]
        time.sleep(0.05)
    lines = [ln for ln in host_process.log_text().splitlines() if f"[{inv}]" in ln]
    assert any("Executing 'Functions.with_context' (Reason=" in ln for ln in lines)
    assert any("user log line from with_context" in ln for ln in lines)


def test_timer_runs_on_schedule(host_process: HostProcess) -> None:
    # SAMPLE_SCHEDULE = "*/1 * * * * *" from the settings file
    deadline = time.monotonic() + 15
    while not _get_state(host_process)["timer_calls"]:
        assert time.monotonic() < deadline, host_process.log_text()[-2000:]
        time.sleep(0.1)
    assert "Timer fired at" in host_process.log_text()


def test_event_grid_over_tcp(host_process: HostProcess) -> None:
    event = {"id": "tcp-1", "subject": "s", "eventType": "T", "data": {}, "dataVersion": "1"}
    resp = requests.post(
        host_process.url("/runtime/webhooks/eventgrid"),
        params={"functionName": "eg_handler"},
        data=json.dumps([event]),
        headers={"aeg-event-type": "Notification"},
        timeout=10,
    )
    assert resp.status_code == 202
    assert any(e["id"] == "tcp-1" for e in _get_state(host_process)["events"])


def test_missing_setting_fails_startup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SAMPLE_SCHEDULE", raising=False)
    empty = tmp_path / "settings.json"
    empty.write_text(json.dumps({"Values": {}}))
    with pytest.raises(HostStartError, match="SAMPLE_SCHEDULE") as info:
        HostProcess(SAMPLE_DIR, settings_file=empty, timers=False).start()
    assert "exited with code 1" in str(info.value)
