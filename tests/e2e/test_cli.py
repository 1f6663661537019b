"""``python -m localdev.stack`` (what ``make run`` runs), as a user runs it: start, use,
Ctrl-C, start again on the same data dir."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from localdev.stack.children import port_is_free

from .helpers import http, stop_stack, wait_for

REPO = Path(__file__).resolve().parents[2]


def free_ports(count: int, consecutive: bool = False) -> list[int]:
    """Free ports; ``consecutive`` gives count ports in a row (Azurite's base port + 2)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = int(sock.getsockname()[1])
        if not consecutive:
            return [base, *free_ports(count - 1)] if count > 1 else [base]
        candidates = list(range(base, base + count))
        if candidates[-1] < 65536 and all(port_is_free(p) for p in candidates):
            return candidates
    raise RuntimeError("no free ports")


def stack_args(data_dir: Path) -> list[str]:
    api, issuer, acs, web = free_ports(4)
    azurite = free_ports(3, consecutive=True)[0]
    return [
        "--data-dir", str(data_dir), "--no-func", "--grace-minutes", "0",
        "--api-port", str(api), "--issuer-port", str(issuer), "--acs-port", str(acs),
        "--azurite-base-port", str(azurite), "--web-port", str(web),
    ]  # fmt: skip


class RunningStack:
    def __init__(self, proc: subprocess.Popen[bytes], out: Path, data_dir: Path) -> None:
        self.proc = proc
        self.out = out
        self.data_dir = data_dir
        self.info: dict[str, Any] = {}

    def output(self) -> str:
        return self.out.read_text(encoding="utf-8", errors="replace")

    def ready(self) -> dict[str, Any] | None:
        assert self.proc.poll() is None, f"the stack exited early:\n{self.output()}"
        try:
            info: dict[str, Any] = json.loads((self.data_dir / "stack.json").read_text())
        except (OSError, ValueError):
            return None
        if info.get("pid") == self.proc.pid and "Press Ctrl-C" in self.output():
            return info
        return None

    def printed(self, name: str) -> str:
        match = re.search(rf"^\s*export {name}=(\S+)$", self.output(), re.MULTILINE)
        assert match, self.output()
        return match.group(1)

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(60)


@contextmanager
def run_stack(args: list[str], data_dir: Path, out: Path) -> Iterator[RunningStack]:
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "localdev.stack", *args], cwd=REPO,
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    running = RunningStack(proc, out, data_dir)
    try:
        running.info = wait_for(running.ready, timeout=90, what="stack.json")
        yield running
    finally:
        stop_stack(proc)  # a failed test: let the stack stop its children


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def test_stack_cli_runs_stops_and_reuses_state(tmp_path: Path) -> None:
    data_dir = tmp_path / "localdev"
    args = stack_args(data_dir)

    with run_stack(args, data_dir, tmp_path / "run1.out") as first:
        info = first.info
        for key in ("apiBase", "issuer", "audience", "acsConnectionString", "caFile",
                    "tableConnectionString", "dataDir"):
            assert info[key], key
        assert info["host"] == "localdev.host"
        assert info["apiBase"] == f"http://127.0.0.1:{args[args.index('--api-port') + 1]}/api"
        assert set(info["pids"]) == {"azurite", "issuer", "acs", "app", "web"}
        check_web_sample(first, args)
        assert http("GET", info["apiBase"] + "/health").json() == {"status": "ok"}
        token = first.printed("TOKEN")
        issued = http("POST", info["apiBase"] + "/token", token=token)
        assert issued.status == 200, issued.body
        acs_user = issued.json()["acsUserId"]
        pids = [first.proc.pid, *info["pids"].values()]

        assert first.stop(signal.SIGINT) == 0, first.output()
        assert all(gone(pid) for pid in pids)
        assert not (data_dir / "stack.json").exists()

    # Second run: same keys, issuer URL, emulator identities and tables.
    with run_stack(args, data_dir, tmp_path / "run2.out") as second:
        api = second.info["apiBase"]
        again = http("POST", api + "/token", token=token)  # the first run's token
        assert again.status == 200, again.body
        assert again.json()["acsUserId"] == acs_user
        me = http("GET", api + "/me", token=second.printed("TOKEN"))
        assert me.json()["acsUserId"] == acs_user
        pids = [second.proc.pid, *second.info["pids"].values()]
        assert second.stop(signal.SIGTERM) == 0, second.output()
        assert all(gone(pid) for pid in pids)


def check_web_sample(running: RunningStack, args: list[str]) -> None:
    """The web sample as make run serves it: its own origin, its stack.json keys (a named
    contract), the banner line, its config.json, and the API's CORS allowing its origin."""
    info = running.info
    origin = f"http://127.0.0.1:{args[args.index('--web-port') + 1]}"
    assert info["webUrl"] == origin + "/"
    assert info["webClientId"] == "acs-token-service-web"
    assert info["webRedirectUri"] == info["webUrl"]
    assert info["ports"]["web"] == int(origin.rsplit(":", 1)[1])
    assert re.search(rf"^  Web sample +{re.escape(info['webUrl'])} ", running.output(),
                     re.MULTILINE), running.output()
    page = http("GET", info["webUrl"])
    assert page.status == 200 and b'<script type="module" src="app.js">' in page.body
    script = http("GET", info["webUrl"] + "app.js")
    assert {k.lower(): v for k, v in script.headers.items()}["content-type"] == "text/javascript"
    config = http("GET", info["webUrl"] + "config.json").json()
    assert config == {
        "authority": info["issuer"],
        "clientId": info["webClientId"],
        "redirectUri": info["webRedirectUri"],
        "apiScope": info["audience"] + "/access_as_user",
        "apiBase": info["apiBase"],
    }
    preflight = http("OPTIONS", info["apiBase"] + "/token", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    other = http("OPTIONS", info["apiBase"] + "/token", headers={
        "Origin": "http://127.0.0.1:1", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in other.headers
    settings = json.loads(Path(info["settingsFile"]).read_text())
    assert settings["Host"]["CORS"] == origin  # what func start (Core Tools) reads


def test_sigint_during_startup_stops_what_was_started(tmp_path: Path) -> None:
    data_dir = tmp_path / "localdev"
    with open(tmp_path / "out", "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "localdev.stack", *stack_args(data_dir)], cwd=REPO,
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    stack = psutil.Process(proc.pid)
    # Interrupt once at least one component runs (bounded wait, not a timing assumption).
    wait_for(lambda: stack.children() or proc.poll() is not None, timeout=60,
             what="the first component")
    children = stack.children(recursive=True)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0, (tmp_path / "out").read_text()
    assert all(gone(c.pid) for c in children)
    assert not (data_dir / "stack.json").exists()


@pytest.mark.parametrize("flag", ["--api-port", "--web-port"])
def test_print_env_and_busy_port(flag: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "localdev"
    # No stack running: --print-env explains and fails.
    proc = subprocess.run(
        [sys.executable, "-m", "localdev.stack", "--data-dir", str(data_dir), "--print-env"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "no stack is running" in proc.stderr

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = stack_args(data_dir)
        args[args.index(flag) + 1] = str(port)
        proc = subprocess.run(
            [sys.executable, "-m", "localdev.stack", *args],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert proc.returncode == 1
    assert f"port {port}" in proc.stderr
    assert flag in proc.stderr
    assert not (data_dir / "stack.json").exists()


@pytest.mark.parametrize("flag", ["--api-port", "--azurite-base-port", "--web-port"])
def test_invalid_port_flag(flag: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "localdev.stack", "--data-dir", str(tmp_path), flag, "70000"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert flag in proc.stderr
