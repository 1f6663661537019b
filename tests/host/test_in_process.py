"""InProcessFunctions: the one in-process way to call an app's functions (tests/calls.py,
localdev.chaos and the benchmark use it). The same Invoker as the HTTP host: the worker's
context, sync functions on the thread pool, errors raised to the caller."""

from __future__ import annotations

from types import ModuleType

import azure.functions as func
import pytest

from localdev.host.invocation import InProcessFunctions, http_request


async def test_http_function_gets_the_workers_request_and_context(
        sample_state: ModuleType) -> None:
    app = InProcessFunctions(sample_state, "/app")
    status, body, _ = await app.call("with_context", http_request("GET", "context/async"))
    assert status == 200
    assert body["function_name"] == "with_context" and body["function_directory"] == "/app"
    assert len(body["invocation_id"]) == 36 and body["traceparent"].startswith("00-")
    # a sync function runs on the host's thread pool, as with the worker
    _, sync, _ = await app.call("with_context_sync", http_request("GET", "context/sync"))
    assert sync["function_name"] == "with_context_sync"
    assert sync["invocation_id"] != body["invocation_id"]


async def test_route_params_and_timer_and_errors(sample_state: ModuleType) -> None:
    app = InProcessFunctions(sample_state)
    req = http_request("GET", "settings/SAMPLE_X", route_params={"name": "SAMPLE_X"})
    assert req.url == "http://localhost/api/settings/SAMPLE_X"
    _, body, _ = await app.call("settings", req)
    assert body["name"] == "SAMPLE_X"
    await app.run_timer("timer_fn")
    assert sample_state.TIMER_CALLS == [{"past_due": False, "schedule_status": {}}]
    event = func.EventGridEvent(id="1", data={}, topic="t", subject="fail", event_type="x",
                                event_time=None, data_version="1.0")
    with pytest.raises(RuntimeError, match="event handler failure"):  # the caller sees it
        await app.run("eg_handler", event)
