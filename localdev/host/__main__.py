"""CLI: python -m localdev.host --app-dir DIR [--host H] [--port P] [--settings F]
[--keys-file F] [--no-timers] [--cors ORIGINS] [--[no-]cors-credentials]"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from ..cors import CorsPolicy, parse_cors
from .invocation import InvocationIdFilter
from .keys import load_or_create_keys
from .loader import (
    FunctionLoadError,
    import_function_app,
    load_local_settings,
    read_host_json,
)
from .ncrontab import ScheduleError
from .routes import RouteTemplateError
from .server import HostAppRunner, create_host_app, get_runtime

READY_PREFIX = "localdev.host ready: "
LOG_FORMAT = "[%(asctime)s] %(levelname)s %(name)s [%(invocation_id)s] %(message)s"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m localdev.host",
        description="Serve an Azure Functions (Python v2) app like the Functions host.",
    )
    p.add_argument("--app-dir", required=True, help="directory with function_app.py and host.json")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="port (default: local.settings.json Host.LocalHttpPort, else 7071; 0 = any free)",
    )
    p.add_argument(
        "--settings",
        default=None,
        help="settings file (default DIR/local.settings.json if present)",
    )
    p.add_argument(
        "--keys-file",
        default=None,
        help="host keys JSON, created if missing (default DIR/.localdev/host-keys.json)",
    )
    p.add_argument("--no-timers", action="store_true", help="do not run timer triggers")
    p.add_argument(
        "--cors",
        default=None,
        help="comma-separated allowed origins, or '*' (default: local.settings.json Host.CORS; "
        "'' turns CORS off)",
    )
    p.add_argument(
        "--cors-credentials",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="send Access-Control-Allow-Credentials: true (default: Host.CORSCredentials)",
    )
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return p


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def cors_policy(
    host_section: dict[str, Any], cors: str | None, credentials: bool | None
) -> CorsPolicy | None:
    """Core Tools' precedence: ``--cors`` / ``--cors-credentials`` win over the Host section."""
    origins = cors if cors is not None else host_section.get("CORS")
    if origins is not None and not isinstance(origins, str):
        raise ValueError("local.settings.json Host.CORS must be a string (comma list or '*')")
    allow_credentials = (
        credentials if credentials is not None else _truthy(host_section.get("CORSCredentials"))
    )
    return parse_cors(origins, allow_credentials)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(InvocationIdFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def _serve(app: web.Application, host: str, port: int) -> None:
    runner = HostAppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            bound = int(addr[1])
            break
    shown_host = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    base = f"http://{shown_host}:{bound}"
    runtime = get_runtime(app)
    lines = ["", "Functions:", ""]
    prefix = f"/{runtime.route_prefix}" if runtime.route_prefix else ""
    for r in runtime.routes:
        methods = ",".join(sorted(r.methods)) if r.methods else "GET,POST,..."
        lines.append(f"\t{r.function.name}: [{methods}] {base}{prefix}/{r.template.template}")
    for fn in runtime.functions:
        if not fn.is_http:
            lines.append(f"\t{fn.name}: {fn.trigger_type}")
    print("\n".join(lines) + "\n", flush=True)
    print(f"{READY_PREFIX}{base}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level)
    log = logging.getLogger("localdev.host")
    app_dir = Path(args.app_dir).resolve()
    try:
        settings_path = Path(args.settings).resolve() if args.settings else None
        if settings_path is None and (app_dir / "local.settings.json").exists():
            settings_path = app_dir / "local.settings.json"
        port = args.port
        host_section: dict[str, Any] = {}
        if settings_path is not None:
            data = load_local_settings(settings_path, skipped=log.warning)
            log.info("Loaded settings from %s", settings_path)
            host_section = data.get("Host") or {}
            if not isinstance(host_section, dict):
                raise ValueError(f"{settings_path}: 'Host' must be an object")
            local_port = host_section.get("LocalHttpPort")
            if port is None and local_port:
                port = int(local_port)
        if port is None:
            port = 7071
        cors = cors_policy(host_section, args.cors, args.cors_credentials)
        if cors is not None:
            shown = "*" if cors.any_origin else ",".join(sorted(cors.origins))
            log.info("CORS: %s (credentials %s)", shown, "on" if cors.credentials else "off")
        keys_path = (
            Path(args.keys_file).resolve()
            if args.keys_file
            else app_dir / ".localdev" / "host-keys.json"
        )
        keys = load_or_create_keys(keys_path)
        log.info("Host keys: %s", keys_path)
        config = read_host_json(app_dir)
        os.chdir(app_dir)
        module = import_function_app(app_dir)
        app = create_host_app(
            module,
            route_prefix=config.route_prefix,
            keys=keys,
            timers=not args.no_timers,
            function_directory=app_dir,
            functions_allow_list=config.functions_allow_list,
            cors=cors,
        )
    except (FunctionLoadError, ScheduleError, RouteTemplateError, ValueError) as exc:
        print(f"localdev.host: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except Exception:
        log.exception("localdev.host: the app could not be loaded")
        return 1
    try:
        asyncio.run(_serve(app, args.host, port))
    except OSError as exc:
        print(f"localdev.host: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
