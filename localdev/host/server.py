"""The aiohttp application that plays the Functions host."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import time
import types
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from azure.functions import meta

from .. import cors as _cors
from .eventgrid import decode_event, fired_reason, handle_eventgrid_webhook
from .http import HttpRoute, build_http_routes, render_result, to_func_request
from .invocation import InvocationResult, Invoker
from .keys import HostKeys, authorize, request_key
from .loader import FunctionInfo, find_function_app, index_functions, read_host_json
from .queues import QueueListeners
from .routes import split_path
from .timers import Clock, TimerScheduler, make_timer_request

__all__ = ["RUNTIME_KEY", "HostAppRunner", "HostRuntime", "create_host_app", "get_runtime"]

log = logging.getLogger("localdev.host")

HOST_VERSION = "4.0.0-localdev"
PROGRAMMATIC_REASON = "This function was programmatically called via the host APIs."
MAX_BODY = 100 * 1024 * 1024


class HostRuntime:
    """Indexed functions + invoker + timers; one per aiohttp app."""

    def __init__(
        self,
        functions: list[FunctionInfo],
        *,
        route_prefix: str,
        keys: HostKeys,
        function_directory: str,
        timers: bool,
        clock: Clock | None,
        environ: Mapping[str, str] | None,
    ) -> None:
        self.functions = functions
        self.by_name = {f.name.lower(): f for f in functions}
        self.route_prefix = route_prefix.strip("/")
        self.prefix_segments = [s.lower() for s in split_path(self.route_prefix)]
        self.keys = keys
        self.invoker = Invoker(function_directory)
        self.routes: list[HttpRoute] = build_http_routes(functions)
        # Built (and %SETTING%s validated) even when not started, like the host.
        self.scheduler = TimerScheduler(functions, self.invoke, clock=clock, environ=environ)
        self.timers_enabled = timers
        self.queues = QueueListeners(functions, self.invoke, environ=environ,
                                     host_json=read_host_json(function_directory).raw)
        self.instance_id = uuid.uuid4().hex
        self.started = time.monotonic()
        self.state = "Initialized"
        self.background: set[asyncio.Task[Any]] = set()
        for fn in functions:
            kind = fn.trigger_type.lower()
            if kind not in ("httptrigger", "timertrigger", "eventgridtrigger", "queuetrigger"):
                log.warning(
                    "Function %s: trigger type '%s' is not emulated; invoke it with "
                    "POST /admin/functions/%s",
                    fn.name,
                    fn.trigger_type,
                    fn.name,
                )
            if fn.disabled:
                log.info("Function %s is disabled (AzureWebJobs.%s.Disabled)", fn.name, fn.name)

    async def invoke(
        self, fn: FunctionInfo, value: Any, reason: str, **kw: Any
    ) -> InvocationResult:
        return await self.invoker.invoke(fn, value, reason, **kw)

    async def invoke_events(self, fn: FunctionInfo, events: list[Any]) -> list[InvocationResult]:
        async def one(event: Any) -> InvocationResult:
            try:
                value = decode_event(event)
            except Exception as exc:  # a binding failure fails the invocation
                log.error("Event Grid event could not be bound for %s: %r", fn.name, exc)
                return InvocationResult(invocation_id=str(uuid.uuid4()), error=exc)
            return await self.invoke(fn, value, fired_reason())

        return list(await asyncio.gather(*(one(e) for e in events)))

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def wait_background(self) -> None:
        """Wait for fire-and-forget invocations (admin API) to finish."""
        while self.background:
            await asyncio.gather(*list(self.background), return_exceptions=True)

    def admin_trigger_value(self, fn: FunctionInfo, data: Any) -> Any:
        kind = fn.trigger_type.lower()
        if kind == "timertrigger":
            state = self.scheduler.timers.get(fn.name)
            now = self.scheduler.clock.now()
            nxt = self.scheduler.next_occurrence(state.schedule, now) if state else None
            return make_timer_request(
                past_due=False, last=state.last if state else None, next_=nxt, last_updated=now
            )
        if kind == "eventgridtrigger":
            return decode_event(data if data is not None else "{}")
        text = data if isinstance(data, str) or data is None else json.dumps(data)
        converter: Any = meta._ConverterMeta._bindings.get(fn.trigger_type)
        if converter is not None and text is not None:
            try:
                return converter.decode(meta.Datum(text, "string"), trigger_metadata={})
            except Exception:  # no faithful conversion: hand over the string
                log.debug("converter for %s could not decode the input", fn.trigger_type)
        return text

    def status(self) -> dict[str, Any]:
        return {
            "id": self.instance_id[:32],
            "state": self.state,
            "version": HOST_VERSION,
            "versionDetails": f"{HOST_VERSION} (localdev.host, Python {platform.python_version()})",
            "platformVersion": "",
            "instanceId": self.instance_id,
            "computerName": platform.node(),
            "processUptime": int((time.monotonic() - self.started) * 1000),
            "functionAppContentEditingState": "NotAllowed",
            "routePrefix": self.route_prefix,
            "functions": [f.name for f in self.functions],
            "errors": [],
        }

    def function_metadata(self, fn: FunctionInfo, base_url: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": fn.name,
            "config": {"bindings": fn.bindings},
            "isDisabled": fn.disabled,
            "language": "python",
        }
        for r in self.routes:
            if r.function is fn:
                prefix = f"/{self.route_prefix}" if self.route_prefix else ""
                data["invoke_url_template"] = f"{base_url}{prefix}/{r.template.template}"
        return data

    # ---------------------------------------------------------------- HTTP
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path.split("?", 1)[0]
        segments = split_path(raw_path)
        lowered = [unquote(s).lower() for s in segments]
        if lowered[:1] == ["admin"] and not self._prefix_claims(lowered):
            return await self._admin(request, lowered)
        if lowered[:2] == ["runtime", "webhooks"] and len(lowered) >= 3:
            if lowered[2] == "eventgrid" and len(lowered) == 3:
                return await handle_eventgrid_webhook(
                    request, self._find_eventgrid_function, self.invoke_events
                )
            return web.Response(status=404)
        return await self._http_trigger(request, segments, lowered)

    def _prefix_claims(self, lowered: list[str]) -> bool:
        return (
            bool(self.prefix_segments)
            and lowered[: len(self.prefix_segments)] == self.prefix_segments
        )

    def _find_eventgrid_function(self, name: str) -> FunctionInfo | None:
        fn = self.by_name.get(name.lower())
        if fn is None or fn.disabled or fn.trigger_type.lower() != "eventgridtrigger":
            return None
        return fn

    async def _http_trigger(
        self, request: web.Request, segments: list[str], lowered: list[str]
    ) -> web.StreamResponse:
        n = len(self.prefix_segments)
        if lowered[:n] != self.prefix_segments:
            return self._not_found(request, lowered)
        rest = segments[n:]
        route: HttpRoute | None = None
        values: dict[str, str] = {}
        for candidate in self.routes:
            got = candidate.template.match(rest)
            if got is not None and candidate.allows(request.method):
                route, values = candidate, got
                break
        if route is None:
            # The host answers 404 also when only the method differs.
            return self._not_found(request, lowered)
        fn = route.function
        query = request.query
        if not authorize(route.auth_level, self.keys, request_key(request.headers, query), fn.name):
            return web.Response(status=401)
        body = await request.read()
        req = await to_func_request(request, values, body)
        result = await self.invoke(
            fn,
            req,
            PROGRAMMATIC_REASON,
            trace_parent=request.headers.get("traceparent"),
            trace_state=request.headers.get("tracestate", ""),
        )
        if result.error is not None:
            return web.Response(status=500)
        try:
            return render_result(fn, result.return_value, result.outputs)
        except Exception:
            log.exception(
                "Executed 'Functions.%s' but its HTTP result could not be rendered (Id=%s)",
                fn.name,
                result.invocation_id,
            )
            return web.Response(status=500)

    def _not_found(self, request: web.Request, lowered: list[str]) -> web.Response:
        if not lowered and request.method in ("GET", "HEAD"):
            return web.Response(
                status=200,
                content_type="text/html",
                text=(
                    "<html><body><h1>Your Functions 4.0 app is up and running</h1>"
                    "<p>(localdev.host)</p></body></html>"
                ),
            )
        return web.Response(status=404)

    async def _admin(self, request: web.Request, lowered: list[str]) -> web.StreamResponse:
        if lowered == ["admin", "host", "status"] and request.method in ("GET", "HEAD"):
            return web.json_response(self.status())
        if lowered == ["admin", "host", "ping"]:
            return web.Response(status=200)
        if lowered == ["admin", "functions"] and request.method == "GET":
            base = f"{request.scheme}://{request.host}"
            return web.json_response([self.function_metadata(f, base) for f in self.functions])
        if len(lowered) == 3 and lowered[1] == "functions":
            fn = self.by_name.get(lowered[2])
            if request.method == "GET":
                if fn is None:
                    return web.Response(status=404)
                base = f"{request.scheme}://{request.host}"
                return web.json_response(self.function_metadata(fn, base))
            if request.method == "POST":
                return await self._admin_invoke(request, fn)
        return web.Response(status=404)

    async def _admin_invoke(self, request: web.Request, fn: FunctionInfo | None) -> web.Response:
        try:
            invocation = json.loads(await request.text() or "null")
        except ValueError:
            invocation = None
        if not isinstance(invocation, dict):
            return web.Response(status=400)
        if fn is None:
            return web.Response(status=404)
        data = invocation.get("input")
        if fn.is_http:
            body = data if isinstance(data, str) else json.dumps(data) if data is not None else ""
            from azure.functions.http import HttpRequest as WorkerHttpRequest

            value: Any = WorkerHttpRequest(
                method="POST",
                url=str(request.url),
                headers={"content-type": "application/json"},
                params={},
                route_params={},
                body_type="bytes",
                body=body.encode("utf-8"),
            )
        else:
            try:
                value = self.admin_trigger_value(fn, data)
            except Exception:
                log.exception("could not bind the admin input for %s", fn.name)
                return web.Response(status=202)  # the host fails in the background

        self.spawn(self.invoke(fn, value, PROGRAMMATIC_REASON))
        return web.Response(status=202)

    # ----------------------------------------------------------- lifecycle
    async def on_startup(self, app: web.Application) -> None:
        self.state = "Running"
        for r in self.routes:
            methods = ",".join(sorted(r.methods)) if r.methods else "*"
            prefix = f"/{self.route_prefix}" if self.route_prefix else ""
            log.info(
                "Function %s: [%s] %s/%s", r.function.name, methods, prefix, r.template.template
            )
        for fn in self.functions:
            if fn.trigger_type.lower() == "eventgridtrigger":
                log.info(
                    "Function %s: eventGridTrigger  /runtime/webhooks/eventgrid?functionName=%s",
                    fn.name,
                    fn.name,
                )
        if self.timers_enabled:
            self.scheduler.start()
        self.queues.start()

    async def on_cleanup(self, app: web.Application) -> None:
        self.state = "Stopped"
        await self.scheduler.stop()
        await self.queues.stop()
        for task in list(self.background):
            task.cancel()
        await asyncio.gather(*list(self.background), return_exceptions=True)
        self.invoker.shutdown()


RUNTIME_KEY: web.AppKey[HostRuntime] = web.AppKey("localdev_host_runtime", HostRuntime)


def get_runtime(app: web.Application) -> HostRuntime:
    return app[RUNTIME_KEY]


def create_host_app(
    function_app_module_or_app: Any,
    route_prefix: str = "api",
    keys: HostKeys | None = None,
    timers: bool = False,
    *,
    function_directory: str | os.PathLike[str] | None = None,
    clock: Clock | None = None,
    environ: Mapping[str, str] | None = None,
    functions_allow_list: list[str] | None = None,
    cors: _cors.CorsPolicy | None = None,
) -> web.Application:
    """An aiohttp app hosting the FunctionApp (module with ``app``, or the app itself).

    ``environ`` (default os.environ) resolves %SETTING% schedules and
    ``AzureWebJobs.<name>.Disabled``.  ``keys`` defaults to fresh random keys
    (read them back with ``get_runtime(app).keys``).  ``cors`` (see localdev/cors.py,
    ``parse_cors``) makes the host answer preflights and add CORS headers, as Core Tools does
    for ``Host.CORS``; None: no CORS, preflights go to routing like any request.
    """
    app_obj = find_function_app(function_app_module_or_app)
    functions = index_functions(app_obj, environ, functions_allow_list)
    if function_directory is None:
        module_file = None
        if isinstance(function_app_module_or_app, types.ModuleType):
            module_file = getattr(function_app_module_or_app, "__file__", None)
        function_directory = Path(module_file).parent if module_file else Path.cwd()
    runtime = HostRuntime(
        functions,
        route_prefix=route_prefix,
        keys=keys or HostKeys.generate(),
        function_directory=str(Path(function_directory).resolve()),
        timers=timers,
        clock=clock,
        environ=environ,
    )
    app = web.Application(client_max_size=MAX_BODY, handler_args=KESTREL_LIMITS)
    app[RUNTIME_KEY] = runtime
    _cors.install(app, cors)
    app.router.add_route("*", "/{tail:.*}", runtime.dispatch)
    app.on_startup.append(runtime.on_startup)
    app.on_cleanup.append(runtime.on_cleanup)
    return app


# -- requests the HTTP parser refuses ---------------------------------------------------------
# Kestrel's defaults (KestrelServerLimits: MaxRequestLineSize 8 KB, MaxRequestHeadersTotalSize
# 32 KB, MaxRequestHeaderCount 100; learn.microsoft.com, "Configure options for the ASP.NET
# Core Kestrel web server"). aiohttp limits each header line, not the whole section, so one
# header may use all 32 KiB, as under Kestrel.
MAX_REQUEST_LINE = 8192
MAX_HEADERS_TOTAL = 32768
KESTREL_LIMITS = {
    "max_line_size": MAX_REQUEST_LINE,
    "max_field_size": MAX_HEADERS_TOTAL,
    "max_headers": 100,
}


def refused_status(exc: HttpProcessingError) -> int:
    """Kestrel's status for a request it cannot parse (its BadHttpRequestException: request
    line too long 414, headers too large or too many 431, anything else 400)."""
    if isinstance(exc, LineTooLong):
        return 414 if exc.args[1:2] == (MAX_REQUEST_LINE,) else 431
    if "too many headers" in (exc.message or "").lower():
        return 431
    return 400


class _QuietRequestHandler(RequestHandler):
    """aiohttp answers an unparsable request with the parser's message, which quotes the
    offending line (a whole ``Authorization: Bearer ...`` header), and logs it with a
    traceback. Kestrel answers with the bare status; so do we, and the log names only the
    status and the kind of error: no request data anywhere."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        status = refused_status(exc)
        log.warning("refused a malformed request: %d (%s)", status, type(exc).__name__)
        response = web.Response(status=status)
        response.force_close()
        return response


class _QuietServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class HostAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer unparsable requests like Kestrel."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The app builds a plain Server (private constructor arguments included); only
        # the connection handler it creates differs, so the class is swapped, not rebuilt.
        server.__class__ = _QuietServer
        return server
