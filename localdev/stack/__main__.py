"""python -m localdev.stack: run the whole token service locally (what ``make run`` does).

Ctrl-C or SIGTERM stops everything; a second run reuses keys, CA, identities and tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from .children import StackError
from .core import ADMIN_ROLE, STATE_FILE, Stack, pid_alive, read_stack_info

DEFAULT_API_PORT = 7071
DEFAULT_ISSUER_PORT = 7072
DEFAULT_ACS_PORT = 8443
DEFAULT_AZURITE_BASE_PORT = 10000
DEFAULT_WEB_PORT = 7073
SAMPLE_USER = "alice"
SAMPLE_ADMIN = "admin"


class _Shutdown(BaseException):
    """Raised from the SIGINT/SIGTERM handler to unwind into a clean stop."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m localdev.stack",
        description="Run the ACS token service locally: Azurite, the ACS emulator, the local "
        "OIDC issuer and the function app (func start if installed, else localdev.host).",
    )
    p.add_argument("--data-dir", default=".localdev", help="state directory (default .localdev)")
    p.add_argument("--api-port", type=int, default=DEFAULT_API_PORT,
                   help=f"function app port (default {DEFAULT_API_PORT}, like Core Tools)")
    p.add_argument("--issuer-port", type=int, default=DEFAULT_ISSUER_PORT,
                   help=f"local OIDC issuer port (default {DEFAULT_ISSUER_PORT}; keep it fixed "
                   "so minted tokens stay valid across runs)")
    p.add_argument("--acs-port", type=int, default=DEFAULT_ACS_PORT,
                   help=f"ACS emulator port (default {DEFAULT_ACS_PORT})")
    p.add_argument("--azurite-base-port", type=int, default=DEFAULT_AZURITE_BASE_PORT,
                   help="Azurite blob port; queue and table use the next two "
                   f"(default {DEFAULT_AZURITE_BASE_PORT}: UseDevelopmentStorage=true works)")
    p.add_argument("--web-port", type=int, default=DEFAULT_WEB_PORT,
                   help=f"web sample port (default {DEFAULT_WEB_PORT}): its own origin, allowed "
                   "by the API's CORS and registered as a public client on the issuer")
    p.add_argument("--no-web", action="store_true", help="do not build or serve the web sample")
    p.add_argument("--grace-minutes", type=int, default=None,
                   help="DELETION_GRACE_MINUTES: how long a deleted user can be restored "
                   "(default: the environment's DELETION_GRACE_MINUTES, else 1440)")
    p.add_argument("--purge-schedule", default=None,
                   help="PURGE_SCHEDULE (NCRONTAB; default: the environment's "
                   "PURGE_SCHEDULE, else every 5 minutes)")
    p.add_argument("--token-minutes", type=int, default=480,
                   help="lifetime of the printed dev tokens (default 480)")
    p.add_argument("--no-func", action="store_true",
                   help="use localdev.host even if func (Core Tools) is on PATH")
    p.add_argument("--detach", action="store_true",
                   help="run in the background; stop it with --stop")
    p.add_argument("--stop", action="store_true",
                   help="stop a stack running (e.g. detached) from --data-dir, then exit")
    p.add_argument("--detached-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--print-env", action="store_true",
                   help="print shell exports for the stack running from --data-dir, then exit")
    return p


def _show(path: str | Path) -> str:
    """A path relative to the working directory when it is below it (shorter banners)."""
    p = Path(path)
    try:
        return str(Path(os.path.abspath(p)).relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def banner(stack: Stack, token: str, admin_token: str, token_minutes: int,
           detached: bool = False) -> str:
    base = stack.base_url
    api = stack.api_base
    blob, queue, table = stack.azurite_ports
    storage = (
        "UseDevelopmentStorage=true" if stack.storage_connection_string.startswith("Use")
        else "connection string in stack.json"
    )
    event_grid = json.dumps([{
        "id": "evt-1", "eventType": "TokenService.RevokeTokens", "subject": f"users/{SAMPLE_USER}",
        "eventTime": "2024-01-01T00:00:00Z", "dataVersion": "1.0",
        "data": {"userId": SAMPLE_USER},
    }], separators=(",", ":"))  # fmt: skip
    mint = (
        f"{_show(sys.executable)} -m localdev.issuer mint --data-dir "
        f"{_show(stack.issuer_dir)} --sub bob --minutes 60  # add --role {ADMIN_ROLE} for admin"
    )
    auth = '-H "Authorization: Bearer $TOKEN"'
    lines = [
        "",
        f"ACS token service running locally (function host: {stack.host})",
        "",
        f"  API base       {api}",
        f"  Issuer         {stack.issuer}  (audience {stack.audience})",
        f"  ACS emulator   {stack.acs_endpoint}  (CA {_show(stack.ca_file)})",
        f"  Azurite        blob {blob}, queue {queue}, table {table}  ({storage})",
        f"  State          {_show(stack.state_file)}   logs: {_show(stack.logs_dir)}/",
        *([f"  Web sample     {stack.web.url}  (sign in with any user id)"]
          if stack.web else []),
        "",
        *_env_lines(stack),
        f"Dev tokens (valid {token_minutes} minutes):",
        f"  export API={api}",
        f"  export TOKEN={token}",
        f"  export ADMIN_TOKEN={admin_token}",
        f"  # TOKEN is user '{SAMPLE_USER}'; ADMIN_TOKEN is '{SAMPLE_ADMIN}' "
        f"with role {ADMIN_ROLE}",
        "",
        "Try:",
        f"  curl -s -X POST $API/token {auth} -H 'Content-Type: application/json' "
        "-d '{\"scopes\": [\"chat\", \"voip\"]}'",
        f"  curl -s $API/me {auth}",
        f"  curl -s -X POST $API/me/revoke {auth} -w '%{{http_code}}\\n'",
        f"  curl -s -X DELETE $API/me {auth}",
        f"  curl -s -X POST $API/users/{SAMPLE_USER}/restore "
        '-H "Authorization: Bearer $ADMIN_TOKEN"',
        "  # run the purge timer now:",
        f"  curl -s -X POST {base}/admin/functions/purge_deleted_users "
        "-H 'Content-Type: application/json' -d '{\"input\": \"\"}' -w '%{http_code}\\n'",
        "  # deliver an Event Grid event (revokes alice's tokens):",
        f"  curl -s -X POST '{base}/runtime/webhooks/eventgrid?functionName=on_user_event' "
        "-H 'aeg-event-type: Notification' -H 'Content-Type: application/json' "
        f"-d '{event_grid}' -w '%{{http_code}}\\n'",
        "",
        "New caller tokens:",
        f"  {mint}",
        "",
        f"Stop it with: {_show(sys.executable)} -m localdev.stack --stop --data-dir "
        f"{_show(stack.data_dir)}" if detached else "Press Ctrl-C to stop.",
        "",
    ]
    return "\n".join(lines)


def _env_lines(stack: Stack) -> list[str]:
    """The settings the environment decided (Core Tools' precedence), so none surprises."""
    if not stack.env_settings:
        return []
    return [
        "Settings from the environment (over the stack's defaults; options override them):",
        *(f"  {name}={value}" for name, value in stack.env_settings.items()),
        "",
    ]


def env_exports(info: dict[str, object], settings: dict[str, str], token: str,
                admin_token: str) -> str:
    values = {
        "API_BASE": str(info["apiBase"]),
        "BEARER_TOKEN": token,
        "ADMIN_TOKEN": admin_token,
        # The banner's short names, so its curl lines work after this too.
        "API": str(info["apiBase"]),
        "TOKEN": token,
        **settings,
    }
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in values.items())


def _print_env(data_dir: Path, minutes: int) -> int:
    info = read_stack_info(data_dir)
    if info is None:
        print(f"no stack is running from {data_dir}; start one with python -m localdev.stack",
              file=sys.stderr)
        return 1
    from localdev.issuer import IssuerKeys

    keys = IssuerKeys.load_or_create(Path(str(info["issuerDir"])))
    issuer, audience = str(info["issuer"]), str(info["audience"])
    token = keys.mint(sub=SAMPLE_USER, issuer=issuer, audience=audience, minutes=minutes)
    admin = keys.mint(sub=SAMPLE_ADMIN, roles=(ADMIN_ROLE,), issuer=issuer, audience=audience,
                      minutes=minutes)
    settings_file = Path(str(info["settingsFile"]))
    settings = json.loads(settings_file.read_text(encoding="utf-8")).get("Values", {})
    print(env_exports(info, settings, token, admin))
    return 0


def _stop_running(data_dir: Path, timeout: float = 60.0) -> int:
    info = read_stack_info(data_dir)
    if info is None:
        print(f"no stack is running from {data_dir}", file=sys.stderr)
        return 1
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        print(f"stack pid {pid} did not stop within {timeout:g}s", file=sys.stderr)
        return 1
    print(f"stopped the stack (pid {pid})")
    return 0


def _detach(argv: list[str], data_dir: Path, timeout: float = 180.0) -> int:
    args = [a for a in argv if a != "--detach"] + ["--detached-child"]
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "stack.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "localdev.stack", *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = read_stack_info(data_dir)
        # devToken is written after the banner is flushed: the log then holds all of it.
        if info is not None and info.get("pid") == proc.pid and "devToken" in info:
            print(log_path.read_text(encoding="utf-8", errors="replace"))
            print(f"detached (pid {proc.pid})")
            return 0
        if proc.poll() is not None:
            sys.stderr.write(log_path.read_text(encoding="utf-8", errors="replace"))
            return proc.returncode or 1
        time.sleep(0.1)
    proc.terminate()
    print(f"the stack did not start within {timeout:g}s; see {log_path}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    data_dir = Path(args.data_dir)
    if args.print_env:
        return _print_env(data_dir, args.token_minutes)
    if args.stop:
        return _stop_running(data_dir)
    if args.detach:
        return _detach(argv, data_dir)
    for name in ("api_port", "issuer_port", "acs_port", "azurite_base_port", "web_port"):
        if not 0 < getattr(args, name) < 65536 - 2:
            print(f"--{name.replace('_', '-')} must be a port number from 1 to 65533",
                  file=sys.stderr)
            return 2
    if args.grace_minutes is not None and args.grace_minutes < 0:
        print("--grace-minutes must be >= 0", file=sys.stderr)
        return 2

    base = args.azurite_base_port
    stack = Stack(
        data_dir,
        api_port=args.api_port,
        issuer_port=args.issuer_port,
        acs_port=args.acs_port,
        azurite_ports=(base, base + 1, base + 2),
        grace_minutes=args.grace_minutes,
        purge_schedule=args.purge_schedule,
        use_func=False if args.no_func else None,
        web_port=None if args.no_web else args.web_port,
    )
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise _Shutdown(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        print(f"starting the local stack in {_show(stack.data_dir)} ...", flush=True)
        stack.start()
        token = stack.mint(SAMPLE_USER, minutes=args.token_minutes)
        admin = stack.mint(SAMPLE_ADMIN, roles=(ADMIN_ROLE,), minutes=args.token_minutes)
        print(banner(stack, token, admin, args.token_minutes, args.detached_child), flush=True)
        stack.extra_info.update({"devUser": SAMPLE_USER, "devToken": token,
                                 "adminToken": admin})
        stack.write_state()
        while True:
            for name, child in stack.children.items():
                if not child.alive:
                    raise StackError(
                        f"{name} exited unexpectedly (log: {child.log_path}):\n{child.tail()}"
                    )
            time.sleep(0.5)
    except _Shutdown:
        print("\nstopping ...", flush=True)
    except StackError as exc:
        print(f"localdev.stack: error: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        stopping = True
        stack.stop()
    if code == 0:
        print(f"stopped; state kept in {_show(stack.data_dir)} (delete it to start fresh; "
              f"{STATE_FILE} removed)", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
