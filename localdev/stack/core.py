"""The whole service on one machine: Azurite, the ACS emulator, the local issuer and the
function app (under ``func start`` when Core Tools is installed, else ``localdev.host``).

``Stack`` is both what ``python -m localdev.stack`` runs and a context manager for tests::

    with Stack(tmp_path) as stack:            # every port 0: free ports
        stack.api_base, stack.mint("alice")
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from localdev import tls
from localdev.azurite import AzuriteProcess
from localdev.files import write_json_atomic
from localdev.lifecycle import Managed

from .children import Child, PortInUseError, StackError, free_port, port_accepts, port_is_free
from .web import WebSample

REPO_ROOT = Path(__file__).resolve().parents[2]
AUDIENCE = "api://acs-token-service"
#: The delegated scope a browser app asks for (as an Entra ID API exposes one).
API_SCOPE = AUDIENCE + "/access_as_user"
ADMIN_ROLE = "TokenService.Admin"
DEFAULT_PURGE_SCHEDULE = "0 */5 * * * *"
#: Azurite's standard ports (blob, queue, table): ``UseDevelopmentStorage=true`` means these.
AZURITE_DEFAULT_PORTS = (10000, 10001, 10002)
STATE_FILE = "stack.json"
STARTUP_TIMEOUT = 60.0

#: Settings that wire the app to the stack's own components (or that its dev tokens rely
#: on): the stack always sets these; an inherited value would point the app elsewhere.
WIRED_SETTINGS = frozenset({
    "AzureWebJobsStorage", "COMMUNICATION_SERVICES_CONNECTION_STRING",
    "COMMUNICATION_SERVICES_ENDPOINT", "IDENTITY_TABLE_CONNECTION",
    "IDENTITY_TABLE_SERVICE_URI", "AZURE_CLIENT_ID", "AUTH_MODE", "AUTH_ISSUER",
    "AUTH_AUDIENCE", "AUTH_JWKS_URI", "AUTH_ADMIN_ROLE", "AUTH_USER_CLAIM",
    "AUTH_ROLES_CLAIM", "AUTH_REQUIRED_SCOPES", "WEBSITE_AUTH_ENABLED",
})  # fmt: skip


def _setting_names() -> set[str]:
    """Settings the app reads. ``shared.config`` imports no SDK, so asking the app itself
    costs nothing."""
    from shared.config import SETTING_NAMES

    return set(SETTING_NAMES)


def settings_from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The app settings a non-empty environment variable decides, as Core Tools does: it
    skips a local.settings.json value "as it's already defined in current environment
    variables" when the variable is set and not empty (StartHostAction.UpdateEnvironmentVariables
    in Azure/azure-functions-core-tools, src/Azure.Functions.Cli/Actions/HostActions/
    StartHostAction.cs). Wired settings are not taken: see WIRED_SETTINGS."""
    return {
        name: environ[name]
        for name in sorted(_setting_names() - WIRED_SETTINGS)
        if environ.get(name)
    }


# Never send loopback calls through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_stack_info(data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """DATA_DIR/stack.json if a stack process that wrote it is still alive, else None."""
    info = _read_json(Path(data_dir) / STATE_FILE)
    if not info or info.get("status") != "running":
        return None
    pid = info.get("pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        return None
    return info


def func_executable() -> str | None:
    """``func`` (Azure Functions Core Tools) from PATH, if installed."""
    return shutil.which("func")


class Stack(Managed):
    """Start every component; ``stop()`` (or leaving the ``with``) stops them in order.

    App settings, as with Core Tools: explicit options (``grace_minutes``,
    ``purge_schedule``, ``extra_settings``) win, then the environment (non-empty
    variables; ``env_settings`` lists them), then the stack's defaults.
    Ports given as 0 are picked free (tests). ``use_func``: None = ``func start`` when it is
    on PATH, False = always ``localdev.host``, True = require ``func``. ``web_port``: None =
    no web sample, else serve examples/web there (0 = a free port), allowed by CORS.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        api_port: int = 0,
        issuer_port: int = 0,
        acs_port: int = 0,
        azurite_ports: Sequence[int] = (0, 0, 0),
        grace_minutes: int | None = None,
        purge_schedule: str | None = None,
        use_func: bool | None = False,
        app_dir: str | os.PathLike[str] = REPO_ROOT,
        extra_settings: Mapping[str, str] | None = None,
        timers: bool = True,
        startup_timeout: float = STARTUP_TIMEOUT,
        web_port: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.app_dir = Path(app_dir).resolve()
        self.api_port = api_port
        self.issuer_port = issuer_port
        self.acs_port = acs_port
        if len(azurite_ports) != 3:
            raise ValueError("azurite_ports is (blob, queue, table)")
        self.azurite_ports = tuple(int(p) for p in azurite_ports)
        self.grace_minutes = grace_minutes
        self.purge_schedule = purge_schedule
        self.use_func = use_func
        self.extra_settings = dict(extra_settings or {})
        self.timers = timers
        self.startup_timeout = startup_timeout
        self.audience = AUDIENCE
        self.web_port = web_port
        self.web: WebSample | None = None

        self.issuer = ""
        self.jwks_uri = ""
        self.acs_endpoint = ""
        self.acs_connection_string = ""
        self.ca_file = ""
        self.ca_bundle = ""
        self.table_connection_string = ""
        self.storage_connection_string = ""
        self.api_base = ""
        self.base_url = ""
        self.host = ""
        self.settings: dict[str, str] = {}
        #: The app settings taken from the environment (the banner lists them).
        self.env_settings: dict[str, str] = {}
        self.children: dict[str, Child] = {}
        #: Merged into stack.json (the CLI adds its dev tokens here).
        self.extra_info: dict[str, Any] = {}
        self._azurite: AzuriteProcess | None = None
        self._started = False

    # -------------------------------------------------------------------- paths
    @property
    def issuer_dir(self) -> Path:
        return self.data_dir / "issuer"

    @property
    def acs_dir(self) -> Path:
        return self.data_dir / "acs"

    @property
    def azurite_dir(self) -> Path:
        return self.data_dir / "azurite"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def acs_state_file(self) -> Path:
        return self.acs_dir / "identities.json"

    @property
    def settings_file(self) -> Path:
        return self.data_dir / "local.settings.json"

    @property
    def state_file(self) -> Path:
        return self.data_dir / STATE_FILE

    @property
    def pids(self) -> dict[str, int]:
        return {name: c.pid for name, c in self.children.items() if c.proc is not None}

    # -------------------------------------------------------------------- lifecycle

    def check_ports(self) -> None:
        """Fail before starting anything if a fixed port is taken."""
        fixed = [
            (self.api_port, "function app API", "--api-port"),
            (self.issuer_port, "local OIDC issuer", "--issuer-port"),
            (self.acs_port, "ACS emulator", "--acs-port"),
            (self.web_port or 0, "web sample", "--web-port"),
        ]
        for port, name in zip(self.azurite_ports, ("blob", "queue", "table"), strict=True):
            fixed.append((port, f"Azurite {name}", "--azurite-base-port"))
        for port, what, flag in fixed:
            if port and not port_is_free(port):
                raise PortInUseError(port, what, flag)

    def start(self) -> Stack:
        if self._started:
            raise StackError("already started")
        running = read_stack_info(self.data_dir)
        if running is not None and running.get("pid") != os.getpid():
            raise StackError(
                f"a stack is already running from {self.data_dir} (pid {running['pid']}); "
                "stop it first (Ctrl-C in its terminal, or kill -TERM the pid)"
            )
        self.check_ports()
        self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        for d in (self.data_dir, self.logs_dir, self.azurite_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.acs_dir.mkdir(parents=True, exist_ok=True)
        # Keys and certificates first: the app's environment names the CA from the start.
        from localdev.issuer import IssuerKeys

        IssuerKeys.load_or_create(self.issuer_dir)
        ca = tls.ensure_ca(self.acs_dir)
        self.ca_file = str(ca.cert_path)
        self.ca_bundle = str(self._write_ca_bundle(ca.cert_path))

        if self.web_port is not None:
            # Known before the issuer and the app start: both are told about its origin.
            self.web = WebSample(self.web_port or free_port(), self.data_dir / "web")
            self.web_port = self.web.port
            self.web.build()
        base_env = self._base_env()
        # Azurite and the issuer have no dependencies: start both, then the emulator.
        blob, queue, table = self.azurite_ports
        self._azurite = AzuriteProcess(
            blob_port=blob or free_port(),
            queue_port=queue or free_port(),
            table_port=table or free_port(),
            table_only=False,
            location=self.azurite_dir,
        )
        self.azurite_ports = (
            self._azurite.blob_port,
            self._azurite.queue_port,
            self._azurite.table_port,
        )
        azurite = self._spawn("azurite", self._azurite.command(), base_env, REPO_ROOT)
        # Azurite saves its tables only every 5 s and on a clean close: SIGINT, and time.
        azurite.stop_signal, azurite.stop_wait = signal.SIGINT, 30.0
        issuer = self._spawn(
            "issuer",
            [
                sys.executable, "-m", "localdev.issuer", "serve",
                "--data-dir", str(self.issuer_dir),
                "--host", "127.0.0.1",
                "--port", str(self.issuer_port),
                "--audience", self.audience,
                *(self.web.issuer_args() if self.web else []),
            ],
            base_env,
            REPO_ROOT,
        )  # fmt: skip
        info = issuer.wait_for(
            lambda: self._ready_json(self.issuer_dir / "issuer.json", issuer),
            self.startup_timeout,
            "issuer.json",
        )
        self.issuer = str(info["issuer"])
        self.jwks_uri = str(info["jwksUri"])
        self.issuer_port = int(info["port"])

        acs = self._spawn(
            "acs",
            [
                sys.executable, "-m", "localdev.acs_emulator",
                "--data-dir", str(self.acs_dir),
                "--port", str(self.acs_port),
                "--state-file", str(self.acs_state_file),
                "--trusted-jwks-uri", self.jwks_uri,
            ],
            base_env,
            REPO_ROOT,
        )  # fmt: skip
        acs_info = acs.wait_for(
            lambda: self._ready_json(self.acs_dir / "acs.json", acs),
            self.startup_timeout,
            "acs.json",
        )
        self.acs_endpoint = str(acs_info["endpoint"])
        self.acs_connection_string = str(acs_info["connectionString"])
        self.acs_port = int(acs_info["port"])

        azurite.wait_for(
            lambda: True if all(port_accepts(p) for p in self.azurite_ports) else None,
            self.startup_timeout,
            "Azurite listening on ports {}, {}, {}".format(*self.azurite_ports),
        )
        self.table_connection_string = self._azurite.connection_string
        self.storage_connection_string = (
            "UseDevelopmentStorage=true"
            if self.azurite_ports == AZURITE_DEFAULT_PORTS
            else self.table_connection_string
        )

        self._start_app(base_env)
        if self.web is not None:
            self._start_web(self.web, base_env)
        self.write_state()

    def _start_app(self, base_env: Mapping[str, str]) -> None:
        if not self.api_port:
            self.api_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.api_base = self.base_url + "/api"
        self.settings = self.app_settings()
        env = dict(base_env)
        for name in _setting_names() - self.env_settings.keys():
            env.pop(name, None)  # an option or a default decides it: the file says which
        func = func_executable() if self.use_func is not False else None
        if self.use_func is True and func is None:
            raise StackError("func (Azure Functions Core Tools) is not on PATH")
        self._write_settings_file(self.settings_file)
        if func is not None:
            self.host = "func"
            self._write_func_settings()
            env.update(self.settings)  # a hand-written local.settings.json may be kept
            venv_bin = str(Path(sys.executable).parent)
            env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
            env["languageWorkers__python__defaultExecutablePath"] = sys.executable
            cmd = [func, "start", "--port", str(self.api_port)]
            cwd = self.app_dir
        else:
            self.host = "localdev.host"
            cmd = [
                sys.executable, "-m", "localdev.host",
                "--app-dir", str(self.app_dir),
                "--host", "127.0.0.1",
                "--port", str(self.api_port),
                "--settings", str(self.settings_file),
                "--keys-file", str(self.data_dir / "host-keys.json"),
            ]  # fmt: skip
            if not self.timers:
                cmd.append("--no-timers")
            if self.web is not None:
                cmd.extend(self.web.host_args())
            cwd = REPO_ROOT
        app = self._spawn("app", cmd, env, cwd)
        app.wait_for(self._host_running, self.startup_timeout * 2, "a running function host")

    def _start_web(self, web: WebSample, base_env: Mapping[str, str]) -> None:
        web.write_config(authority=self.issuer, api_scope=API_SCOPE, api_base=self.api_base)
        child = self._spawn("web", web.serve_command(), base_env, REPO_ROOT)
        child.wait_for(lambda: self._ready_json(web.ready_file, child), self.startup_timeout,
                       "web.json")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the app first (it uses the rest), then the others together."""
        app = self.children.get("app")
        if app is not None:
            app.stop(timeout)
        others = [c for name, c in self.children.items() if name != "app"]
        for child in others:
            child.terminate()
        for child in others:
            child.stop(timeout)
        info = _read_json(self.state_file)
        if info is not None and info.get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                self.state_file.unlink()
        self._started = False

    # -------------------------------------------------------------------- helpers
    def _spawn(self, name: str, cmd: Sequence[str], env: Mapping[str, str], cwd: Path) -> Child:
        child = Child(name, cmd, log_path=self.logs_dir / f"{name}.log", env=env, cwd=cwd)
        self.children[name] = child
        return child.start()

    @staticmethod
    def _ready_json(path: Path, child: Child) -> dict[str, Any] | None:
        info = _read_json(path)
        if info is not None and info.get("pid") == child.pid:
            return info
        return None

    def _host_running(self) -> bool | None:
        try:
            with _OPENER.open(self.base_url + "/admin/host/status", timeout=2) as resp:
                if resp.status == 200 and json.load(resp).get("state") == "Running":
                    return True
        except (urllib.error.URLError, OSError, ValueError):
            pass
        return None

    def _base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        # aiohttp reads SSL_CERT_FILE when imported: set for every child from the start.
        env["SSL_CERT_FILE"] = self.ca_bundle
        env["REQUESTS_CA_BUNDLE"] = self.ca_bundle
        env["NODE_EXTRA_CA_CERTS"] = self.ca_file
        env.pop("AZURITE_ACCOUNTS", None)
        return env

    def _write_ca_bundle(self, ca_path: Path) -> Path:
        """The public roots plus the emulator's CA: SSL_CERT_FILE replaces the default
        roots, and the app (or Core Tools) may still need public HTTPS."""
        parts: list[str] = []
        try:
            import certifi

            parts.append(Path(certifi.where()).read_text(encoding="utf-8"))
        except (ImportError, OSError):
            pass
        parts.append(ca_path.read_text(encoding="utf-8"))
        bundle = self.data_dir / "ca-bundle.pem"
        text = "\n".join(p.rstrip("\n") for p in parts) + "\n"
        if not bundle.exists() or bundle.read_text(encoding="utf-8") != text:
            bundle.write_text(text, encoding="utf-8")
        return bundle

    def app_settings(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The function app's settings (what local.settings.json "Values" holds): the
        stack's defaults, then the environment's, then the explicit options."""
        settings = {
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "AzureWebJobsStorage": self.storage_connection_string,
            "AzureWebJobsFeatureFlags": "EnableWorkerIndexing",
            "COMMUNICATION_SERVICES_CONNECTION_STRING": self.acs_connection_string,
            "IDENTITY_TABLE_CONNECTION": self.table_connection_string,
            "IDENTITY_TABLE_NAME": "AcsIdentities",
            "AUTH_MODE": "jwt",
            "AUTH_ISSUER": self.issuer,
            "AUTH_AUDIENCE": self.audience,
            "AUTH_ADMIN_ROLE": ADMIN_ROLE,
            "DELETION_GRACE_MINUTES": "1440",
            "PURGE_SCHEDULE": DEFAULT_PURGE_SCHEDULE,
            "REVOKE_QUEUE_NAME": "acs-revoke-after-delete",
            "SSL_CERT_FILE": self.ca_bundle,
            "REQUESTS_CA_BUNDLE": self.ca_bundle,
        }
        explicit = dict(self.extra_settings)
        if self.grace_minutes is not None:
            explicit["DELETION_GRACE_MINUTES"] = str(self.grace_minutes)
        if self.purge_schedule is not None:
            explicit["PURGE_SCHEDULE"] = self.purge_schedule
        from_env = settings_from_environment(os.environ if environ is None else environ)
        self.env_settings = {k: v for k, v in from_env.items() if k not in explicit}
        settings.update(self.env_settings)
        settings.update(explicit)
        return settings

    def _write_settings_file(self, path: Path) -> None:
        doc = {
            "IsEncrypted": False,
            "Values": self.settings,
            "Host": {"LocalHttpPort": self.api_port,
                     **(self.web.host_settings() if self.web else {})},
        }
        write_json_atomic(path, doc, private=True)

    def _write_func_settings(self) -> None:
        """Core Tools reads APP_DIR/local.settings.json. A hand-written one is left alone
        (the environment, which Core Tools prefers, carries the stack's settings anyway)."""
        target = self.app_dir / "local.settings.json"
        marker = self.data_dir / "func-local.settings.json"
        if target.exists() and (
            not marker.exists() or marker.read_bytes() != target.read_bytes()
        ):
            print(
                f"note: keeping your {target}; the stack's settings reach func through the "
                "environment",
                file=sys.stderr,
            )
            return
        self._write_settings_file(target)
        shutil.copyfile(target, marker)

    # -------------------------------------------------------------------- outputs
    def mint(self, sub: str = "alice", roles: Sequence[str] = (), minutes: float = 60) -> str:
        """A caller token for this stack's issuer and audience (no server needed)."""
        from localdev.issuer import IssuerKeys

        keys = IssuerKeys.load_or_create(self.issuer_dir)
        return keys.mint(
            sub=sub, roles=tuple(roles), minutes=minutes, issuer=self.issuer,
            audience=self.audience,
        )  # fmt: skip

    def info(self) -> dict[str, Any]:
        """The content of stack.json."""
        blob, queue, table = self.azurite_ports
        return {
            "status": "running",
            "pid": os.getpid(),
            "startedAt": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "apiBase": self.api_base,
            "baseUrl": self.base_url,
            "issuer": self.issuer,
            "jwksUri": self.jwks_uri,
            "audience": self.audience,
            "acsEndpoint": self.acs_endpoint,
            "acsConnectionString": self.acs_connection_string,
            "caFile": self.ca_file,
            "caBundle": self.ca_bundle,
            "tableConnectionString": self.table_connection_string,
            "storageConnectionString": self.storage_connection_string,
            "dataDir": str(self.data_dir),
            "issuerDir": str(self.issuer_dir),
            "settingsFile": str(self.settings_file),
            "logsDir": str(self.logs_dir),
            "host": self.host,
            "ports": {
                "api": self.api_port,
                "issuer": self.issuer_port,
                "acs": self.acs_port,
                "azuriteBlob": blob,
                "azuriteQueue": queue,
                "azuriteTable": table,
                **({"web": self.web.port} if self.web else {}),
            },
            "pids": self.pids,
            "graceMinutes": _int_or_none(self.settings.get("DELETION_GRACE_MINUTES")),
            "settingsFromEnvironment": sorted(self.env_settings),
            **(self.web.info() if self.web else {}),
            **self.extra_info,
        }

    def write_state(self) -> None:
        write_json_atomic(self.state_file, self.info(), private=True)
