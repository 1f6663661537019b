"""Child processes of the stack: each in its own process group, with its own log file.

A child in its own process group does not get the terminal's Ctrl-C: the stack decides
the shutdown order itself, and stopping a child signals its whole group (so `func start`
takes its language worker with it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")


# Resolved in the parent: a forked child of a threaded process must not import anything.
_PRCTL: Callable[..., int] | None = None
if sys.platform == "linux":
    try:
        import ctypes

        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover
        _PRCTL = None
_PR_SET_PDEATHSIG = 1
_SIGTERM = int(signal.SIGTERM)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: SIGTERM this child if the stack dies without stopping it (e.g. SIGKILL)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, _SIGTERM)


class StackError(RuntimeError):
    """The stack could not start (a busy port, a component that died or never got ready)."""


class PortInUseError(StackError):
    def __init__(self, port: int, what: str, flag: str) -> None:
        self.port = port
        self.what = what
        self.flag = flag
        super().__init__(
            f"port {port} ({what}) is already in use; stop whatever listens there "
            f"or pass {flag} to use another port"
        )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``port`` (SO_REUSEADDR, as servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Child:
    """One component process: ``start()``, ``wait_for(check)``, ``stop()``."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str],
        cwd: Path,
    ) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.log_path = log_path
        self.env = dict(env)
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._terminated = False
        #: The signal the child shuts down cleanly on, and the least time it gets to.
        self.stop_signal = signal.SIGTERM
        self.stop_wait = 0.0

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise StackError(f"{self.name} is not started")
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Child:
        self._terminated = False
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=str(self.cwd),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if _PRCTL is not None else None,
            )
        except OSError as exc:
            self._close_log()
            raise StackError(f"{self.name}: cannot run {self.cmd[0]}: {exc}") from exc
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for(self, check: Callable[[], T | None], timeout: float, what: str) -> T:
        """Poll ``check`` until it returns something; fail if the child dies or time runs out."""
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            result = check()
            if result is not None:
                return result
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise StackError(
                    f"{self.name} exited with code {code} before {what} "
                    f"(log: {self.log_path}):\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise StackError(
                    f"{self.name}: no {what} after {timeout:g}s (log: {self.log_path}):\n"
                    f"{self.tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def terminate(self) -> None:
        """``stop_signal`` (SIGTERM unless set) to the child's process group, once (no wait).

        Once only: Azurite handles the first SIGINT/SIGTERM (``process.once``) by saving
        its databases; a second one would kill it before it has.
        """
        if self.alive and not self._terminated:
            assert self.proc is not None
            self._terminated = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, self.stop_signal)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Signal the group, SIGKILL after ``timeout`` (at least ``stop_wait``); returns
        the exit code."""
        proc = self.proc
        if proc is None:
            self._close_log()
            return None
        self.terminate()
        try:
            proc.wait(max(timeout, self.stop_wait))
        except subprocess.TimeoutExpired:
            print(f"{self.name} did not exit in time and was killed; its last writes may "
                  f"be lost", file=sys.stderr, flush=True)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        # Leftovers of the group (a worker the leader did not take down) go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self._close_log()
        return proc.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
