"""HostProcess: run ``python -m localdev.host`` as a subprocess (for tests/tools)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = ["HostProcess", "HostStartError"]

REPO_ROOT = Path(__file__).resolve().parents[2]
_READY_RE = re.compile(r"localdev\.host ready: (http://\S+)")


class HostStartError(RuntimeError):
    """The host subprocess died or did not become ready in time."""


class HostProcess:
    """``with HostProcess(app_dir) as host: requests.get(host.base_url + "/api/x")``.

    * ``env``: extra environment variables on top of ``os.environ``;
    * ``keys_file``: default a fresh file in a private temp dir;
    * ``cors`` / ``cors_credentials``: ``--cors ORIGINS`` / ``--cors-credentials`` (None / False:
      whatever the settings file's ``Host.CORS`` / ``Host.CORSCredentials`` say);
    * output (stdout+stderr) goes to ``host.log_path``; ``host.log_text()``.
    """

    def __init__(
        self,
        app_dir: str | os.PathLike[str],
        port: int = 0,
        env: Mapping[str, str] | None = None,
        settings_file: str | os.PathLike[str] | None = None,
        keys_file: str | os.PathLike[str] | None = None,
        timers: bool = True,
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
        cors: str | None = None,
        cors_credentials: bool = False,
    ) -> None:
        self.app_dir = Path(app_dir).resolve()
        self.port = port
        self.env = dict(env or {})
        self.settings_file = Path(settings_file).resolve() if settings_file else None
        self._keys_file = Path(keys_file).resolve() if keys_file else None
        self.timers = timers
        self.host = host
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self.cors = cors
        self.cors_credentials = cors_credentials
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: str | None = None
        self._log: IO[bytes] | None = None
        self.log_path: Path | None = None
        self.base_url = ""
        self.master_key = ""
        self.function_key = ""

    @property
    def keys_file(self) -> Path:
        if self._keys_file is None:
            raise RuntimeError("not started")
        return self._keys_file

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "localdev.host",
            "--app-dir",
            str(self.app_dir),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--keys-file",
            str(self.keys_file),
        ]
        if self.settings_file is not None:
            cmd += ["--settings", str(self.settings_file)]
        if not self.timers:
            cmd.append("--no-timers")
        if self.cors is not None:
            cmd.append(f"--cors={self.cors}")
        if self.cors_credentials:
            cmd.append("--cors-credentials")
        return cmd + self.extra_args

    def start(self) -> HostProcess:
        self._tmpdir = tempfile.mkdtemp(prefix="localdev-host-")
        if self._keys_file is None:
            self._keys_file = Path(self._tmpdir) / "host-keys.json"
        self.log_path = Path(self._tmpdir) / "host.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            self.command(),
            cwd=str(REPO_ROOT),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.cleanup()
            raise
        keys = json.loads(self.keys_file.read_text(encoding="utf-8"))
        self.master_key = keys["masterKey"]
        fkeys = keys.get("functionKeys") or {}
        self.function_key = fkeys.get("default") or next(iter(fkeys.values()), "")
        return self

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def _tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise HostStartError(
                    f"localdev.host exited with code {code} during startup; output:\n{self._tail()}"
                )
            if not self.base_url:
                m = _READY_RE.search(self.log_text())
                if m:
                    self.base_url = m.group(1).rstrip("/")
            if self.base_url:
                try:
                    with urllib.request.urlopen(
                        self.base_url + "/admin/host/status", timeout=2
                    ) as resp:
                        if resp.status == 200 and json.load(resp).get("state") == "Running":
                            return
                except (urllib.error.URLError, OSError, ValueError):
                    pass
            time.sleep(0.05)
        raise HostStartError(
            f"localdev.host did not become ready within {self.startup_timeout}s; "
            f"output:\n{self._tail()}"
        )

    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def cleanup(self) -> None:
        self.stop()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> HostProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
