"""Run the emulator as a subprocess and talk to its control endpoints (for tests and tools)."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from localdev.lifecycle import Managed

REPO_ROOT = Path(__file__).resolve().parents[2]
# Control calls are always local: never send them through an HTTP(S)_PROXY.
_NO_PROXY_HANDLER = urllib.request.ProxyHandler({})


class EmulatorError(RuntimeError):
    """The emulator did not start, died, or a control call failed."""


class EmulatorProcess(Managed):
    """``with EmulatorProcess(data_dir) as emu: ...`` starts ``python -m localdev.acs_emulator``.

    ``stop()`` then ``start()`` restarts it on the same port with the same data
    dir (keys, resource id and, with ``state_file``, identities survive).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int = 0,
        rate_scale: float = 1.0,
        access_key: str | None = None,
        state_file: str | os.PathLike[str] | None = None,
        trusted_jwks_uri: str | None = None,
        revoke_delay: float = 0.0,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 20.0,
    ):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.rate_scale = rate_scale
        self.access_key = access_key
        self.state_file = Path(state_file).resolve() if state_file is not None else None
        self.trusted_jwks_uri = trusted_jwks_uri
        self.revoke_delay = revoke_delay
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.info: dict[str, Any] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._ssl: ssl.SSLContext | None = None

    # ------------------------------------------------------------------ properties
    @property
    def endpoint(self) -> str:
        return str(self._require("endpoint"))

    @property
    def connection_string(self) -> str:
        return str(self._require("connectionString"))

    @property
    def ca_file(self) -> str:
        return str(self._require("caFile"))

    @property
    def pid(self) -> int:
        return int(self._require("pid"))

    @property
    def resource_id(self) -> str:
        return str(self._require("resourceId"))

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def stderr_path(self) -> Path:
        return self.data_dir / "acs-emulator.log"

    def _require(self, key: str) -> Any:
        if key not in self.info:
            raise EmulatorError("emulator has not been started")
        return self.info[key]

    # ------------------------------------------------------------------ lifecycle
    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "localdev.acs_emulator",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--rate-scale",
            repr(float(self.rate_scale)),
        ]
        if self.access_key:
            cmd += ["--access-key", self.access_key]
        if self.state_file is not None:
            cmd += ["--state-file", str(self.state_file)]
        if self.trusted_jwks_uri:
            cmd += ["--trusted-jwks-uri", self.trusted_jwks_uri]
        if self.revoke_delay:
            cmd += ["--revoke-delay", repr(float(self.revoke_delay))]
        cmd += list(self.extra_args)
        return cmd

    def _stderr_tail(self, limit: int = 4000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def start(self) -> EmulatorProcess:
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        with (
            open(self.data_dir / "acs-emulator.out", "wb") as out,
            open(self.stderr_path, "wb") as err,
        ):
            self._proc = subprocess.Popen(
                self.command(),
                cwd=str(REPO_ROOT),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        acs_json = self.data_dir / "acs.json"
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                info = json.loads(acs_json.read_text())
                if info.get("pid") == self._proc.pid:
                    break
            except (OSError, ValueError):
                pass
            rc = self._proc.poll()
            if rc is not None:
                self._proc = None
                raise EmulatorError(
                    f"ACS emulator exited with code {rc} before it was ready:\n"
                    f"{self._stderr_tail()}"
                )
            if time.monotonic() > deadline:
                self._kill()
                raise EmulatorError(
                    f"ACS emulator not ready after {self.startup_timeout:g}s:\n"
                    f"{self._stderr_tail()}"
                )
            time.sleep(0.02)
        self.info = info
        self.port = int(info["port"])
        self._ssl = ssl.create_default_context(cafile=info["caFile"])
        return self

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (state file flushed), then SIGKILL after ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        """SIGKILL: no clean shutdown (for crash tests)."""
        self._kill()


    # ------------------------------------------------------------------ control plane
    def control(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        url = self.endpoint.rstrip("/") + "/_emulator/" + path.lstrip("/")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        opener = urllib.request.build_opener(
            _NO_PROXY_HANDLER, urllib.request.HTTPSHandler(context=self._ssl)
        )
        try:
            with opener.open(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise EmulatorError(
                f"{method} /_emulator/{path} -> {exc.code}: {exc.read().decode(errors='replace')}"
            ) from exc

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", "stats")
        return result

    def identities(self) -> list[str]:
        return list(self.control("GET", "identities")["identities"])

    def validate(self, token: str) -> dict[str, Any]:
        result: dict[str, Any] = self.control("POST", "validate", {"token": token})
        return result

    def jwks(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", "jwks")
        return result

    def set_faults(
        self,
        latency_ms: float | None = None,
        fault: dict[str, Any] | list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if latency_ms is not None:
            body["latencyMs"] = latency_ms
        if fault is not None:
            body["fault"] = fault
        result: dict[str, Any] = self.control("POST", "faults", body)
        return result

    def clear_faults(self) -> None:
        self.control("POST", "faults", {"clear": True})

    def reset(self) -> None:
        self.control("POST", "reset", {})

    def configure(
        self,
        revoke_delay: float | None = None,
        expires_on_digits: int | str | None = "keep",
    ) -> dict[str, Any]:
        """Change the revoke delay and/or the expiresOn shape until the next ``reset()``."""
        body: dict[str, Any] = {}
        if revoke_delay is not None:
            body["revokeDelaySeconds"] = revoke_delay
        if expires_on_digits != "keep":
            body["expiresOnDigits"] = expires_on_digits
        result: dict[str, Any] = self.control("POST", "config", body)
        return result
