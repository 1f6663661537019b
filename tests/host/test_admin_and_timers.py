"""Admin APIs (invoke non-HTTP functions, host status) and the timer scheduler."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from types import ModuleType
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from localdev.host import ManualClock, ScheduleError, create_host_app, get_runtime
from localdev.host.loader import FunctionInfo, index_functions
from localdev.host.timers import TimerScheduler

from .conftest import SAMPLE_ENV, runtime_of

Client = TestClient[Any, Any]
UTC = dt.timezone.utc


async def test_host_status(client: Client) -> None:
    resp = await client.get("/admin/host/status")
    assert resp.status == 200
    data = await resp.json()
    assert data["state"] == "Running"
    assert data["version"].startswith("4.")
    assert "eg_handler" in data["functions"]


async def test_admin_invoke_timer_function(client: Client, sample_state: ModuleType) -> None:
    resp = await client.post("/admin/functions/timer_fn", json={"input": ""})
    assert resp.status == 202
    await runtime_of(client).wait_background()
    assert len(sample_state.TIMER_CALLS) == 1
    call = sample_state.TIMER_CALLS[0]
    assert call["past_due"] is False
    assert set(call["schedule_status"]) == {"Last", "Next", "LastUpdated"}


async def test_admin_invoke_event_grid_function(client: Client, sample_state: ModuleType) -> None:
    event = {
        "id": "adm-1",
        "subject": "s",
        "eventType": "Custom.Thing",
        "eventTime": "2024-01-01T00:00:00Z",
        "data": {"x": 1},
        "dataVersion": "1",
    }
    resp = await client.post("/admin/functions/eg_handler", json={"input": json.dumps(event)})
    assert resp.status == 202
    await runtime_of(client).wait_background()
    assert sample_state.EVENTS[0]["cls"] == "EventGridEvent"
    assert sample_state.EVENTS[0]["event_type"] == "Custom.Thing"
    assert sample_state.EVENTS[0]["data"] == {"x": 1}


async def test_admin_invoke_errors(client: Client) -> None:
    assert (await client.post("/admin/functions/nope", json={"input": ""})).status == 404
    # the host rejects a missing/invalid body before looking the function up
    assert (await client.post("/admin/functions/timer_fn", data="not json")).status == 400
    assert (await client.post("/admin/functions/nope", data="")).status == 400


async def test_admin_invoke_function_name_is_case_insensitive(
    client: Client, sample_state: ModuleType
) -> None:
    resp = await client.post("/admin/functions/TIMER_FN", json={"input": None})
    assert resp.status == 202
    await runtime_of(client).wait_background()
    assert len(sample_state.TIMER_CALLS) == 1


def test_missing_schedule_setting_is_a_startup_error(sample_state: ModuleType) -> None:
    with pytest.raises(ScheduleError, match="SAMPLE_SCHEDULE"):
        create_host_app(sample_state, environ={})


def test_disabled_function_setting(sample_state: ModuleType) -> None:
    app = create_host_app(
        sample_state, environ={**SAMPLE_ENV, "AzureWebJobs.hello.Disabled": "true"}
    )
    runtime = get_runtime(app)
    assert "hello/{name}" not in [r.template.template for r in runtime.routes]
    assert "items/{slug}" in [r.template.template for r in runtime.routes]


# ------------------------------------------------------------ scheduler


class Recorder:
    def __init__(self) -> None:
        self.calls: asyncio.Queue[tuple[str, Any, str]] = asyncio.Queue()

    async def __call__(self, fn: FunctionInfo, request: Any, reason: str) -> None:
        await self.calls.put((fn.name, request, reason))


def _timer_functions(sample_state: ModuleType, env: dict[str, str]) -> list[FunctionInfo]:
    fns = index_functions(sample_state.app, env)
    return [f for f in fns if f.trigger_type == "timerTrigger"]


async def test_scheduler_with_manual_clock(sample_state: ModuleType) -> None:
    clock = ManualClock(dt.datetime(2024, 1, 1, 0, 0, 3, tzinfo=UTC))
    rec = Recorder()
    env = {"SAMPLE_SCHEDULE": "*/10 * * * * *"}
    sched = TimerScheduler(_timer_functions(sample_state, env), rec, clock=clock, environ=env)
    assert sched.describe("timer_fn", 3) == [
        dt.datetime(2024, 1, 1, 0, 0, s, tzinfo=UTC) for s in (10, 20, 30)
    ]
    sched.start()
    try:
        assert await clock.wait_for_sleeper() == [dt.datetime(2024, 1, 1, 0, 0, 10, tzinfo=UTC)]
        assert rec.calls.empty()

        clock.set(dt.datetime(2024, 1, 1, 0, 0, 10, tzinfo=UTC))
        name, request, reason = await rec.calls.get()
        assert name == "timer_fn"
        assert request.past_due is False
        assert reason.startswith("Timer fired at 2024-01-01T00:00:10")
        assert request.schedule_status["Next"].startswith("2024-01-01T00:00:20")
        assert request.schedule == {"AdjustForDST": True}

        assert await clock.wait_for_sleeper() == [dt.datetime(2024, 1, 1, 0, 0, 20, tzinfo=UTC)]
        # jump past several occurrences: one invocation, flagged past due
        clock.set(dt.datetime(2024, 1, 1, 0, 0, 45, tzinfo=UTC))
        _, request, _ = await rec.calls.get()
        assert request.past_due is True
        assert request.schedule_status["Last"].startswith("2024-01-01T00:00:10")
        assert await clock.wait_for_sleeper() == [dt.datetime(2024, 1, 1, 0, 0, 50, tzinfo=UTC)]
        assert rec.calls.empty()
    finally:
        await sched.stop()


async def test_run_on_startup_and_timezone(sample_state: ModuleType) -> None:
    env = {"SAMPLE_SCHEDULE": "0 30 9 * * *", "WEBSITE_TIME_ZONE": "Europe/Berlin"}
    fns = _timer_functions(sample_state, env)
    fns[0].trigger["runOnStartup"] = True
    clock = ManualClock(dt.datetime(2024, 7, 1, 6, 0, tzinfo=UTC))
    rec = Recorder()
    sched = TimerScheduler(fns, rec, clock=clock, environ=env)
    sched.start()
    try:
        _, request, _ = await rec.calls.get()  # runOnStartup
        assert request.past_due is False
        # 09:30 Berlin summer time = 07:30 UTC
        assert await clock.wait_for_sleeper() == [dt.datetime(2024, 7, 1, 7, 30, tzinfo=UTC)]
    finally:
        await sched.stop()


async def test_timers_started_by_host_app(sample_state: ModuleType) -> None:
    clock = ManualClock(dt.datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC))
    app = create_host_app(
        sample_state, timers=True, clock=clock, environ={"SAMPLE_SCHEDULE": "0 */5 * * * *"}
    )
    async with TestClient(TestServer(app)):
        assert await clock.wait_for_sleeper() == [dt.datetime(2024, 1, 1, 0, 5, tzinfo=UTC)]
        clock.set(dt.datetime(2024, 1, 1, 0, 5, tzinfo=UTC))
        await clock.wait_for_sleeper()
        assert clock.sleepers == [dt.datetime(2024, 1, 1, 0, 10, tzinfo=UTC)]
        assert len(sample_state.TIMER_CALLS) == 1
        assert sample_state.TIMER_CALLS[0]["past_due"] is False
