"""Sample Functions app for the localdev.host tests (not deployed anywhere)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading

import azure.functions as func

# Default auth level for HTTP functions that do not set one: FUNCTION.
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

ANON = func.AuthLevel.ANONYMOUS

# State the tests inspect (in-process directly, out-of-process via /api/_state).
EVENTS: list[dict[str, object]] = []
TIMER_CALLS: list[dict[str, object]] = []
ADMIN_INPUTS: list[str] = []
_BATCHES: dict[str, dict[str, object]] = {}
_BARRIERS: dict[str, threading.Barrier] = {}
_LOCK = threading.Lock()

log = logging.getLogger("sample_app")


def _json(data: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(data), status_code=status, mimetype="application/json")


@app.route(route="hello/{name}", methods=["GET"], auth_level=ANON)
async def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"Hello, {req.route_params['name']}")


@app.route(route="items/{id:int}", methods=["GET"], auth_level=ANON)
def item_by_id(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"kind": "id", "id": req.route_params["id"]})


@app.route(route="items/{slug}", methods=["GET"], auth_level=ANON)
async def item_by_slug(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"kind": "slug", "slug": req.route_params["slug"]})


@app.route(route="items/new", methods=["GET"], auth_level=ANON)
def item_new(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"kind": "literal"})


@app.route(route="items", methods=["POST"], auth_level=ANON)
def item_create(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"created": req.get_json()}, status=201)


@app.route(route="things/{id:guid}/flag/{on:bool}", methods=["GET"], auth_level=ANON)
def typed(req: func.HttpRequest) -> func.HttpResponse:
    return _json(dict(req.route_params))


@app.route(route="files/{*path}", methods=["GET"], auth_level=ANON)
def files(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"path": req.route_params.get("path")})


@app.route(route="opt/{name?}", methods=["GET"], auth_level=ANON)
def optional(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"name": req.route_params.get("name")})


@app.route(route="letters/{word:alpha}", methods=["GET"], auth_level=ANON)
def letters(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"word": req.route_params["word"]})


@app.route(route="echo", methods=["POST", "PUT"], auth_level=ANON)
def echo(req: func.HttpRequest) -> func.HttpResponse:
    resp = _json(
        {
            "method": req.method,
            "url": req.url,
            "params": dict(req.params),
            "route_params": dict(req.route_params),
            "x_test": req.headers.get("x-test"),
            "content_type": req.headers.get("content-type"),
            "body": req.get_body().decode("utf-8"),
        },
        status=201,
    )
    resp.headers["X-Echo"] = "yes"
    resp.headers.add_header("Set-Cookie", "a=1; Path=/")
    resp.headers.add_header("Set-Cookie", "b=2; Path=/")
    return resp


@app.route(route="throttled", methods=["GET"], auth_level=ANON)
def throttled(req: func.HttpRequest) -> func.HttpResponse:
    """A 429 whose function exposes Retry-After to cross-origin script itself."""
    return func.HttpResponse(
        status_code=429,
        headers={"Retry-After": "7", "Access-Control-Expose-Headers": "Retry-After"},
    )


@app.route(auth_level=ANON)
def default_route(req: func.HttpRequest) -> str:
    return f"default route via {req.method}"


@app.function_name("NamedFunction")
@app.route(auth_level=ANON)
def named_impl(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("named", mimetype="text/html", charset="latin-1")


@app.route(route="secure/function", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def secure_function(req: func.HttpRequest) -> str:
    return "function level ok"


@app.route(route="secure/admin", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def secure_admin(req: func.HttpRequest) -> str:
    return "admin level ok"


@app.route(route="secure/default", methods=["GET"])
def secure_default(req: func.HttpRequest) -> str:
    return "app default level ok"


@app.route(route="boom", auth_level=ANON)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret internal detail")


@app.route(route="boom-async", auth_level=ANON)
async def boom_async(req: func.HttpRequest) -> func.HttpResponse:
    raise ValueError("another secret")


@app.route(route="nothing", auth_level=ANON)
def returns_none(req: func.HttpRequest) -> None:
    return None


@app.route(route="concurrency/async", methods=["GET"], auth_level=ANON)
async def concurrent_async(req: func.HttpRequest) -> func.HttpResponse:
    """Waits until `n` requests of the same batch are in flight at once."""
    batch, n = req.params["batch"], int(req.params["n"])
    state = _BATCHES.setdefault(batch, {"count": 0, "event": asyncio.Event()})
    state["count"] = int(state["count"]) + 1  # type: ignore[call-overload]
    event = state["event"]
    assert isinstance(event, asyncio.Event)
    if state["count"] == n:
        event.set()
    try:
        await asyncio.wait_for(event.wait(), timeout=15)
    except asyncio.TimeoutError:
        return func.HttpResponse("not concurrent", status_code=504)
    return func.HttpResponse("together")


@app.route(route="concurrency/sync", methods=["GET"], auth_level=ANON)
def concurrent_sync(req: func.HttpRequest) -> func.HttpResponse:
    """Blocks its thread until `n` requests of the batch are running in parallel."""
    batch, n = req.params["batch"], int(req.params["n"])
    with _LOCK:
        barrier = _BARRIERS.setdefault(batch, threading.Barrier(n, timeout=15))
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        return func.HttpResponse("not concurrent", status_code=504)
    return func.HttpResponse(f"thread {threading.current_thread().name}")


@app.route(route="context/async", methods=["GET"], auth_level=ANON)
async def with_context(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    log.info("user log line from with_context")
    return _json(
        {
            "invocation_id": context.invocation_id,
            "function_name": context.function_name,
            "function_directory": context.function_directory,
            "traceparent": context.trace_context.trace_parent,
        }
    )


@app.route(route="context/sync", methods=["GET"], auth_level=ANON)
def with_context_sync(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    log.warning("sync user log line from a worker thread")
    return _json({"invocation_id": context.invocation_id, "function_name": context.function_name})


@app.route(route="settings/{name}", methods=["GET"], auth_level=ANON)
def settings(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params["name"]
    return _json({"name": name, "value": os.environ.get(name), "cwd": os.getcwd()})


@app.route(route="_state", methods=["GET"], auth_level=ANON)
def state(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"events": EVENTS, "timer_calls": TIMER_CALLS, "admin_inputs": ADMIN_INPUTS})


@app.event_grid_trigger(arg_name="event")
def eg_handler(event: func.EventGridEvent) -> None:
    record: dict[str, object] = {"cls": type(event).__name__, "id": event.id}
    if isinstance(event, func.EventGridEvent):
        record.update(
            event_type=event.event_type,
            subject=event.subject,
            topic=event.topic,
            data=event.get_json(),
            data_version=event.data_version,
            event_time=event.event_time.isoformat() if event.event_time else None,
        )
    else:  # CloudEvent
        record.update(
            type=event.type,
            source=event.source,
            subject=event.subject,
            data=event.get_json(),
            specversion=event.specversion,
        )
    with _LOCK:
        EVENTS.append(record)
    if record.get("subject") == "fail":
        raise RuntimeError("event handler failure")


@app.timer_trigger(schedule="%SAMPLE_SCHEDULE%", arg_name="timer", run_on_startup=False)
def timer_fn(timer: func.TimerRequest) -> None:
    with _LOCK:
        TIMER_CALLS.append(
            {"past_due": timer.past_due, "schedule_status": dict(timer.schedule_status)}
        )
    log.info("timer_fn ran (past_due=%s)", timer.past_due)
