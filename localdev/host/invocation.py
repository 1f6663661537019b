"""Invoking user functions the way the Python worker does.

* ``context``: a parameter literally named ``context`` that is not a binding
  receives a :class:`func.Context` (invocation_id, function_name,
  function_directory, trace_context, retry_context, thread_local_storage).
* async functions are awaited on the host's event loop; sync functions run in
  a thread pool (``PYTHON_THREADPOOL_THREAD_COUNT`` workers, else the Python
  default), with the caller's contextvars copied.
* While a function runs, :func:`current_invocation_id` returns its id, and
  :class:`InvocationIdFilter` stamps log records with it.
* Host-style log lines: ``Executing 'Functions.NAME' (Reason='...', Id=...)``
  and ``Executed 'Functions.NAME' (Succeeded|Failed, Id=..., Duration=Nms)``.

:class:`InProcessFunctions` is the one way to call an app's functions in-process without
the HTTP server: the tests (tests/calls.py), ``localdev.chaos`` and the benchmark use it,
so none of them builds requests, contexts or trigger values its own way::

    app = in_process()                       # function_app, indexed once per process
    status, body, headers = await app.call("issue_token", http_request("POST", "token",
                                            token=bearer, body={"scopes": ["chat"]}))
    await app.run_timer("purge_deleted_users")
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import json
import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions import _abc as azf_abc
from azure.functions.http import HttpRequest as WorkerHttpRequest

from .loader import FunctionInfo, find_function_app, index_functions

__all__ = [
    "InProcessFunctions",
    "InvocationContext",
    "InvocationIdFilter",
    "InvocationResult",
    "Invoker",
    "OutBinding",
    "current_invocation_id",
    "http_request",
    "in_process",
]

_INVOCATION_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "localdev_host_invocation_id", default=None
)

log = logging.getLogger("localdev.host")


def current_invocation_id() -> str | None:
    """The id of the function invocation running in this context, if any."""
    return _INVOCATION_ID.get()


class InvocationIdFilter(logging.Filter):
    """Adds ``record.invocation_id`` (the current invocation id or "-")."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "invocation_id", None):
            record.invocation_id = current_invocation_id() or "-"
        return True


class _TraceContext(azf_abc.TraceContext):
    def __init__(self, trace_parent: str, trace_state: str, attributes: dict[str, str]) -> None:
        self._trace_parent = trace_parent
        self._trace_state = trace_state
        self._attributes = attributes

    @property
    def trace_state(self) -> str:
        return self._trace_state

    @property
    def trace_parent(self) -> str:
        return self._trace_parent

    @property
    def attributes(self) -> dict[str, str]:
        return self._attributes

    # The worker's TraceContext also exposes the capitalised names.
    @property
    def Tracestate(self) -> str:
        return self._trace_state

    @property
    def Traceparent(self) -> str:
        return self._trace_parent

    @property
    def Attributes(self) -> dict[str, str]:
        return self._attributes


class _RetryContext(azf_abc.RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(func.Context):
    """What the worker passes as ``context``."""

    _tls = threading.local()

    def __init__(
        self,
        invocation_id: str,
        function_name: str,
        function_directory: str,
        trace_parent: str,
        trace_state: str = "",
    ) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._trace_context = _TraceContext(trace_parent, trace_state, {})
        self._retry_context = _RetryContext()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._tls

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> _TraceContext:
        return self._trace_context

    @property
    def retry_context(self) -> _RetryContext:
        return self._retry_context


class OutBinding(func.Out[Any]):
    """``func.Out`` for output bindings the local host does not deliver anywhere."""

    def __init__(self) -> None:
        self._value: Any = None
        self.was_set = False

    def set(self, val: Any) -> None:
        self._value = val
        self.was_set = True

    def get(self) -> Any:
        return self._value


def new_trace_parent(incoming: str | None = None) -> str:
    """W3C traceparent: keep the incoming trace id, new span id."""
    span = secrets.token_hex(8)
    if incoming:
        parts = incoming.split("-")
        if len(parts) == 4 and len(parts[1]) == 32:
            return f"00-{parts[1]}-{span}-{parts[3]}"
    return f"00-{secrets.token_hex(16)}-{span}-00"


@dataclass
class InvocationResult:
    invocation_id: str
    return_value: Any = None
    outputs: dict[str, OutBinding] = field(default_factory=dict)
    error: BaseException | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None


def _thread_count() -> int | None:
    raw = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT")
    if raw and raw.isdigit() and int(raw) > 0:
        return int(raw)
    return None


class Invoker:
    """Runs functions: builds arguments, logs, tracks the invocation id."""

    def __init__(self, function_directory: str) -> None:
        self.function_directory = function_directory
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=_thread_count(), thread_name_prefix="localdev-host-sync"
            )
        return self._executor

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def invoke(
        self,
        fn: FunctionInfo,
        trigger_value: Any,
        reason: str,
        *,
        trace_parent: str | None = None,
        trace_state: str = "",
        invocation_id: str | None = None,
    ) -> InvocationResult:
        """``invocation_id``: the id the host sends with the invocation request (the
        worker never makes one); without it, a new one, as the host would make."""
        invocation_id = invocation_id or str(uuid.uuid4())
        result = InvocationResult(invocation_id=invocation_id)
        kwargs: dict[str, Any] = {fn.trigger_name: trigger_value}
        for name in fn.out_binding_names:
            result.outputs[name] = kwargs[name] = OutBinding()
        for name in fn.in_binding_names:
            kwargs[name] = None
        # The worker builds the Context for every invocation, whether or not the function
        # asks for it, and stores the id in its thread-local storage
        # (azure-functions-python-worker dispatcher.py, _handle__invocation_request:
        # ``fi_context = self._get_context(...)``, then ``if fi.requires_context``).
        context = InvocationContext(
            invocation_id,
            fn.name,
            self.function_directory,
            new_trace_parent(trace_parent),
            trace_state,
        )
        context.thread_local_storage.invocation_id = invocation_id
        if fn.wants_context:
            kwargs["context"] = context
        flog = logging.getLogger(f"Function.{fn.name}")
        token = _INVOCATION_ID.set(invocation_id)
        started = time.perf_counter()
        try:
            flog.info(
                "Executing 'Functions.%s' (Reason='%s', Id=%s)", fn.name, reason, invocation_id
            )
            try:
                if fn.is_async:
                    result.return_value = await fn.func(**kwargs)
                else:
                    ctx = contextvars.copy_context()
                    loop = asyncio.get_running_loop()
                    result.return_value = await loop.run_in_executor(
                        self.executor, lambda: ctx.run(fn.func, **kwargs)
                    )
            except Exception as exc:  # the host reports, never propagates
                result.error = exc
            duration = round((time.perf_counter() - started) * 1000)
            if result.error is not None:
                flog.error(
                    "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)",
                    fn.name,
                    invocation_id,
                    duration,
                )
                flog.error(
                    "Exception while executing function: Functions.%s",
                    fn.name,
                    exc_info=result.error,
                )
            else:
                for name, out in result.outputs.items():
                    if out.was_set and not fn.is_http_output(name):
                        flog.info(
                            "Output binding '%s' (%s) was set; the local host does not "
                            "deliver it: %r",
                            name,
                            fn.binding_types.get(name, "?"),
                            out.get(),
                        )
                flog.info(
                    "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
                    fn.name,
                    invocation_id,
                    duration,
                )
        finally:
            _INVOCATION_ID.reset(token)
        return result


def http_request(
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    raw: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    route_params: Mapping[str, str] | None = None,
    route_prefix: str = "api",
) -> func.HttpRequest:
    """The request the Python worker builds for ``METHOD /api/PATH`` (raw body bytes, as
    http.to_func_request does): a JSON ``body`` or ``raw`` bytes, a bearer ``token``."""
    all_headers = {"content-type": "application/json", **(headers or {})}
    if token is not None:
        all_headers["authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    prefix = f"/{route_prefix}" if route_prefix else ""
    return WorkerHttpRequest(
        method=method,
        url=f"http://localhost{prefix}/{path}",
        headers=all_headers,
        params=dict(params or {}),
        route_params=dict(route_params or {}),
        body_type="bytes",
        body=data,
    )


class InProcessFunctions:
    """An app's functions, indexed like the host indexes them and invoked through
    :class:`Invoker` (the worker's context, thread pool for sync functions, host logs)."""

    def __init__(self, app: Any, function_directory: str | os.PathLike[str] = ".") -> None:
        infos = index_functions(find_function_app(app))
        self.functions: dict[str, FunctionInfo] = {f.name: f for f in infos}
        self.invoker = Invoker(os.fspath(function_directory))

    def user_function(self, name: str) -> Callable[..., Any]:
        return self.functions[name].func

    async def invoke(self, name: str, trigger_value: Any,
                     reason: str = "This function was programmatically called via the host APIs.",
                     *, invocation_id: str | None = None) -> InvocationResult:
        return await self.invoker.invoke(self.functions[name], trigger_value, reason,
                                         invocation_id=invocation_id)

    async def call(self, name: str, req: func.HttpRequest) -> tuple[int, Any, dict[str, str]]:
        """An HTTP function's (status, JSON body or text, headers); its exception propagates."""
        response = await self.run(name, req)
        raw = response.get_body()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode("utf-8", "replace")
        return response.status_code, payload, dict(response.headers)

    async def run(self, name: str, trigger_value: Any, *,
                  invocation_id: str | None = None) -> Any:
        """Invoke ``name`` and return its return value; its exception propagates.
        ``invocation_id``: the host's id for it (a load generator numbers its own, so
        that the host's work of making one is not charged to the function)."""
        result = await self.invoke(name, trigger_value, invocation_id=invocation_id)
        if result.error is not None:
            raise result.error
        return result.return_value

    async def run_timer(self, name: str) -> None:
        """One run of a timer function, with the TimerRequest the host sends."""
        from .timers import make_timer_request

        await self.run(name, make_timer_request())


@functools.cache
def in_process(module_name: str = "function_app") -> InProcessFunctions:
    """The app in ``module_name`` (imported as usual), indexed once per process."""
    import importlib

    module = importlib.import_module(module_name)
    directory = Path(getattr(module, "__file__", None) or ".").resolve().parent
    return InProcessFunctions(module, directory)
