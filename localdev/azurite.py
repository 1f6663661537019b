"""Start Azurite (installed from npm into ./node_modules) for tests and the local stack.

``table_only`` runs ``azurite-table`` (enough for the app's own tests); the full
``azurite`` (blob, queue, table) is what the Functions host needs for timers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from localdev.lifecycle import Managed

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
#: Azurite's published, well-known development key (not a secret).
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def azurite_binary(name: str = "azurite-table") -> str:
    local = ROOT / "node_modules" / ".bin" / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found:
        return found
    raise RuntimeError(f"{name} not found: run 'make setup' (npm install) first")


class AzuriteProcess(Managed):
    """Azurite on 127.0.0.1 with in-memory (or on-disk) persistence."""

    def __init__(
        self,
        *,
        table_port: int = 0,
        blob_port: int = 0,
        queue_port: int = 0,
        table_only: bool = True,
        location: Path | None = None,
        https: tuple[Path, Path] | None = None,
        oauth: bool = False,
        log_file: Path | None = None,
    ) -> None:
        self.table_only = table_only
        self.table_port = table_port or free_port()
        self.blob_port = blob_port or (0 if table_only else free_port())
        self.queue_port = queue_port or (0 if table_only else free_port())
        self.location = location
        self.https = https
        self.oauth = oauth
        self.log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.https else "http"

    @property
    def table_endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.table_port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        parts = [
            f"DefaultEndpointsProtocol={self.scheme}",
            f"AccountName={ACCOUNT}",
            f"AccountKey={DEV_KEY}",
            f"TableEndpoint={self.table_endpoint};",
        ]
        if not self.table_only:
            parts.insert(3, f"BlobEndpoint={self.scheme}://127.0.0.1:{self.blob_port}/{ACCOUNT}")
            parts.insert(4, f"QueueEndpoint={self.scheme}://127.0.0.1:{self.queue_port}/{ACCOUNT}")
        return ";".join(parts)

    def command(self) -> list[str]:
        common = ["--skipApiVersionCheck", "--loose", "--disableTelemetry"]
        if self.location is None:
            common.append("--inMemoryPersistence")
        else:
            self.location.mkdir(parents=True, exist_ok=True)
            common += ["--location", str(self.location)]
        if self.https:
            common += ["--cert", str(self.https[0]), "--key", str(self.https[1])]
        if self.oauth:
            common += ["--oauth", "basic"]
        if self.table_only:
            return [
                azurite_binary("azurite-table"),
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                str(self.table_port),
                *common,
            ]
        return [
            azurite_binary("azurite"),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.blob_port),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(self.queue_port),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(self.table_port),
            *common,
        ]

    def start(self, timeout: float = 30.0) -> AzuriteProcess:
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        env = {**os.environ, "AZURITE_ACCOUNTS": ""}
        env.pop("AZURITE_ACCOUNTS")
        self._proc = subprocess.Popen(
            self.command(),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"azurite exited with {self._proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.table_port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("azurite did not start in time")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop Azurite so that it saves its data first.

        Azurite keeps tables in LokiJS and writes them to disk only every 5 s
        (``autosaveInterval: 5000`` in its LokiTableMetadataStore) and when it closes.
        SIGINT is the signal both ``azurite`` and ``azurite-table`` close on;
        ``azurite-table`` has no SIGTERM handler, so SIGTERM kills it with up to 5 s
        of acknowledged writes unsaved. SIGKILL, only if it has not exited after
        ``timeout``, loses the same.
        """
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

