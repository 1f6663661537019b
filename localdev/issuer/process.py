"""Handles on a running local issuer: a subprocess (IssuerProcess) or a thread (IssuerServer)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from localdev.lifecycle import Managed

from .keys import DEFAULT_AUDIENCE, KEYRING_FILE, IssuerKeys, read_issuer_info
from .oidc import CODE_LIFETIME_SECONDS
from .server import _ServerThread

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0

# Never route loopback calls through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _IssuerHandle:
    """Attributes and helpers common to IssuerProcess and IssuerServer."""

    data_dir: Path
    issuer: str
    jwks_uri: str
    audience: str
    port: int
    pid: int
    identity_endpoint: str
    identity_header: str
    tenant_id: str
    info: dict[str, Any]

    @property
    def authorization_endpoint(self) -> str:
        return self.issuer + "/authorize"

    @property
    def token_endpoint(self) -> str:
        return self.issuer + "/token"

    def _set_info(self, info: dict[str, Any]) -> None:
        self.info = info
        self.issuer = info["issuer"]
        self.jwks_uri = info["jwksUri"]
        self.audience = info["audience"]
        self.port = int(info["port"])
        self.pid = int(info["pid"])
        self.identity_endpoint = info["identityEndpoint"]
        self.identity_header = info["identityHeader"]
        self.tenant_id = info["tenantId"]

    @property
    def discovery_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    @property
    def keys(self) -> IssuerKeys:  # pragma: no cover - overridden
        raise NotImplementedError

    def mi_env(self) -> dict[str, str]:
        """Environment for azure-identity's ManagedIdentityCredential (App Service flavour)."""
        return {
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.identity_header,
        }

    def mint(
        self, sub: str = "alice", roles: Sequence[str] = (), minutes: float = 60, **kw: Any
    ) -> str:
        """A caller token with this server's issuer and audience (override with issuer=/audience=).

        Other keywords as IssuerKeys.mint: alg, oid, extra_claims, headers.
        """
        kw.setdefault("issuer", self.issuer)
        kw.setdefault("audience", self.audience)
        return self.keys.mint(sub=sub, roles=roles, minutes=minutes, **kw)

    def mint_teams(self, oid: str, appid: str, minutes: float = 60, **kw: Any) -> str:
        return self.keys.mint_teams(oid=oid, appid=appid, minutes=minutes, **kw)

    def _request(self, method: str, path: str) -> Any:
        req = urllib.request.Request(
            self.issuer + path, method=method, data=b"" if method == "POST" else None
        )
        with _OPENER.open(req, timeout=10) as resp:
            return json.loads(resp.read().decode("utf-8"))

    def stats(self) -> dict[str, int]:
        """{"discoveryRequests", "jwksRequests", "msiRequests", "tokenRequests"}."""
        result: dict[str, int] = self._request("GET", "/_issuer/stats")
        return result

    def reset_stats(self) -> dict[str, int]:
        result: dict[str, int] = self._request("POST", "/_issuer/stats/reset")
        return result

    def rotate(self, alg: str = "RS256") -> str:
        """Add a new signing key on the server (old one stays in the JWKS); returns the new kid."""
        kid: str = self._request("POST", f"/_issuer/rotate?alg={alg}")["kid"]
        return kid


class IssuerProcess(_IssuerHandle, Managed):
    """``python -m localdev.issuer serve`` as a subprocess; a context manager.

    Waits until DIR/issuer.json names the child's pid (timeout 20 s; the child's stderr is in the
    error if it dies or times out). Terminates the child on exit.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int = 0,
        audience: str = DEFAULT_AUDIENCE,
        host: str = "127.0.0.1",
        timeout: float = START_TIMEOUT,
        env: dict[str, str] | None = None,
        *,
        public_clients: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._public_clients = dict(public_clients or {})
        self._port_arg = port
        self._audience_arg = audience
        self._host = host
        self._timeout = timeout
        self._env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None
        self._keys: IssuerKeys | None = None
        self._keys_stamp: tuple[int, int] | None = None

    def start(self) -> IssuerProcess:
        if self.proc is not None:
            raise RuntimeError("already started")
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "localdev.issuer", "serve",
            "--data-dir", str(self.data_dir),
            "--host", self._host,
            "--port", str(self._port_arg),
            "--audience", self._audience_arg,
        ]  # fmt: skip
        for client_id, uris in self._public_clients.items():
            for uri in [uris] if isinstance(uris, str) else uris:
                cmd += ["--public-client", f"{client_id}={uri}"]
        env = dict(os.environ if self._env is None else self._env)
        env["PYTHONUNBUFFERED"] = "1"
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self._stderr
        )
        deadline = time.monotonic() + self._timeout
        while True:
            info = read_issuer_info(self.data_dir)
            if info and info.get("pid") == self.proc.pid:
                self._set_info(info)
                return self
            if self.proc.poll() is not None:
                err = self._read_stderr()
                self._close_stderr()
                rc = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"local issuer exited with {rc} before it was ready:\n{err}")
            if time.monotonic() > deadline:
                err = self._read_stderr()
                self.stop()
                raise RuntimeError(
                    f"local issuer not ready after {self._timeout:.0f}s "
                    f"(no {self.data_dir / 'issuer.json'} for its pid):\n{err}"
                )
            time.sleep(0.02)

    def _read_stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        data: bytes = self._stderr.read()
        return data.decode("utf-8", "replace")

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    @property
    def stderr_text(self) -> str:
        return self._read_stderr()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the child (SIGKILL after ``timeout``); returns its exit code."""
        proc, self.proc = self.proc, None
        rc = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            rc = proc.returncode
        self._close_stderr()
        return rc

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def keys(self) -> IssuerKeys:
        """The data dir's keys, reloaded when the keyring changed (e.g. after rotate())."""
        try:
            st = (self.data_dir / KEYRING_FILE).stat()
        except FileNotFoundError:  # not started yet: create the keys now
            IssuerKeys.load_or_create(self.data_dir)
            st = (self.data_dir / KEYRING_FILE).stat()
        stamp = (st.st_mtime_ns, st.st_size)
        if self._keys is None or stamp != self._keys_stamp:
            self._keys = IssuerKeys.load_or_create(self.data_dir)
            self._keys_stamp = stamp
        return self._keys

    def rotate(self, alg: str = "RS256") -> str:
        kid = super().rotate(alg)
        self._keys = None
        return kid



class IssuerServer(_IssuerHandle, Managed):
    """The same server in a background thread of this process (fast; for tests).

    Same attributes and helpers as IssuerProcess; ``pid`` is this process.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int = 0,
        audience: str = DEFAULT_AUDIENCE,
        host: str = "127.0.0.1",
        write_issuer_json: bool = True,
        timeout: float = START_TIMEOUT,
        *,
        public_clients: Mapping[str, Sequence[str]] | None = None,
        code_lifetime: float = CODE_LIFETIME_SECONDS,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._thread = _ServerThread(
            self.data_dir, host, port, audience, write_issuer_json, public_clients, code_lifetime
        )
        self._timeout = timeout
        self._started = False

    def start(self) -> IssuerServer:
        if self._started:
            raise RuntimeError("already started")
        self._started = True
        self._thread.start()
        if not self._thread.ready.wait(self._timeout):
            self.stop()
            raise RuntimeError(f"in-process issuer not ready after {self._timeout:.0f}s")
        if self._thread.error is not None:
            raise RuntimeError(f"in-process issuer failed: {self._thread.error!r}") from (
                self._thread.error
            )
        assert self._thread.state is not None
        self._set_info(self._thread.state.info())
        return self

    def stop(self) -> None:
        self._thread.request_stop()
        if self._thread.is_alive():
            self._thread.join(10)

    @property
    def keys(self) -> IssuerKeys:
        """The server's own IssuerKeys (rotations are visible immediately)."""
        assert self._thread.state is not None, "not started"
        return self._thread.state.keys

