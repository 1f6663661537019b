"""``python -m localdev.stack --detach`` as docs/local-stack.md describes it: the same banner
(without "Press Ctrl-C", which would not stop a detached stack), ``--print-env`` with the
names the examples read and the emulator's connection string, then ``--stop``."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from .helpers import http
from .test_cli import REPO, stack_args


def stack_cli(*args: str, timeout: float = 200) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "localdev.stack", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_detach_prints_the_banner_and_print_env_matches_the_examples(tmp_path: Path) -> None:
    data_dir = tmp_path / "localdev"
    started = stack_cli(*stack_args(data_dir), "--detach")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        out = started.stdout
        for line in ("API base", "export API=", "export TOKEN=", "export ADMIN_TOKEN=",
                     "curl -s -X POST $API/token", "Stop it with:", "--stop --data-dir"):
            assert line in out, out
        assert "Press Ctrl-C" not in out
        log = (data_dir / "logs" / "stack.log").read_text()
        assert "export TOKEN=" in log and "Press Ctrl-C" not in log

        env = stack_cli("--data-dir", str(data_dir), "--print-env", timeout=60)
        assert env.returncode == 0, env.stderr
        exports = dict(
            shlex.split(line.removeprefix("export "))[0].split("=", 1)
            for line in env.stdout.splitlines()
        )
        info = json.loads((data_dir / "stack.json").read_text())
        assert exports["API_BASE"] == exports["API"] == info["apiBase"]
        assert exports["BEARER_TOKEN"] == exports["TOKEN"]
        assert re.fullmatch(r"endpoint=https://127\.0\.0\.1:\d+/;accesskey=\S+",
                            exports["COMMUNICATION_SERVICES_CONNECTION_STRING"])
        issued = http("POST", exports["API"] + "/token", token=exports["TOKEN"])
        assert issued.status == 200, issued.body
    finally:
        stopped = stack_cli("--data-dir", str(data_dir), "--stop", timeout=90)
    assert stopped.returncode == 0, stopped.stderr
    assert not (data_dir / "stack.json").exists()
