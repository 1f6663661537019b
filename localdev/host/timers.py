"""Timer triggers: NCRONTAB scheduling like the timer extension's TimerListener.

* schedules are evaluated in local wall-clock time of ``WEBSITE_TIME_ZONE``
  (IANA names only) or ``TZ``, else UTC (the host's default);
* ``runOnStartup``: one invocation when the host starts;
* after each invocation completes the next occurrence is computed from *now*
  (invocations of one function never overlap; occurrences that pass during a
  long invocation are skipped, as in the host);
* ``past_due`` is true when the scheduler woke up after the *following*
  occurrence had already passed (the host sets IsPastDue when the schedule
  monitor finds a missed occurrence); missed occurrences run once;
* ``schedule_status`` {Last, Next, LastUpdated} comes from an in-memory
  monitor (the host keeps it in storage), ``schedule`` is {"AdjustForDST": true}.

The clock is injectable (:class:`ManualClock` for tests).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from azure.functions import meta
from azure.functions.timer import TimerRequestConverter

from .loader import FunctionInfo
from .ncrontab import ConstantSchedule, Schedule, parse_schedule

__all__ = [
    "Clock",
    "ManualClock",
    "SystemClock",
    "TimerScheduler",
    "make_timer_request",
    "schedule_timezone",
]

log = logging.getLogger("localdev.host.timers")
UTC = dt.timezone.utc


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Current time, timezone-aware."""
        ...

    async def sleep_until(self, when: dt.datetime) -> None: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC)

    async def sleep_until(self, when: dt.datetime) -> None:
        while True:
            remaining = (when - self.now()).total_seconds()
            if remaining <= 0:
                return
            # short chunks so that wall-clock jumps (suspend) are noticed
            await asyncio.sleep(min(remaining, 30.0))


class ManualClock:
    """A clock that only moves when told to (``advance``/``set``)."""

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start
        self._sleepers: list[tuple[dt.datetime, asyncio.Future[None]]] = []
        self._changed = asyncio.Condition()

    def now(self) -> dt.datetime:
        return self._now

    @property
    def sleepers(self) -> list[dt.datetime]:
        return sorted(w for w, f in self._sleepers if not f.done())

    async def sleep_until(self, when: dt.datetime) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((when, fut))
        async with self._changed:
            self._changed.notify_all()
        try:
            await fut
        finally:
            self._sleepers = [(w, f) for w, f in self._sleepers if f is not fut]

    def set(self, now: dt.datetime) -> None:
        self._now = now
        for when, fut in list(self._sleepers):
            if when <= now and not fut.done():
                fut.set_result(None)

    def advance(self, delta: dt.timedelta) -> None:
        self.set(self._now + delta)

    async def wait_for_sleeper(self, count: int = 1) -> list[dt.datetime]:
        """Wait until at least ``count`` tasks are sleeping on this clock."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.sleepers) >= count)
        return self.sleepers


def schedule_timezone(environ: Mapping[str, str] | None = None) -> dt.tzinfo:
    env = os.environ if environ is None else environ
    for var in ("WEBSITE_TIME_ZONE", "TZ"):
        name = env.get(var)
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                log.warning("%s=%r is not an IANA time zone; using UTC", var, name)
    return UTC


def make_timer_request(
    past_due: bool = False,
    last: dt.datetime | None = None,
    next_: dt.datetime | None = None,
    last_updated: dt.datetime | None = None,
) -> Any:
    """A func.TimerRequest decoded from the JSON the host sends to the worker."""
    status: dict[str, str] = {}
    if last is not None or next_ is not None:
        status = {
            "Last": (last or dt.datetime.min.replace(tzinfo=UTC)).isoformat(),
            "Next": next_.isoformat() if next_ else "",
            "LastUpdated": (last_updated or dt.datetime.now(UTC)).isoformat(),
        }
    payload = {
        "Schedule": {"AdjustForDST": True},
        "ScheduleStatus": status or None,
        "IsPastDue": past_due,
    }
    return TimerRequestConverter.decode(
        meta.Datum(json.dumps(payload), "json"), trigger_metadata={}
    )


TimerInvoke = Callable[[FunctionInfo, Any, str], Awaitable[Any]]


@dataclass
class _TimerState:
    fn: FunctionInfo
    schedule: Schedule
    run_on_startup: bool
    last: dt.datetime | None = None
    task: asyncio.Task[None] | None = None
    fired: int = field(default=0)


class TimerScheduler:
    def __init__(
        self,
        functions: list[FunctionInfo],
        invoke: TimerInvoke,
        *,
        clock: Clock | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self._invoke = invoke
        self.tz = schedule_timezone(environ)
        self.timers: dict[str, _TimerState] = {}
        for fn in functions:
            if fn.trigger_type.lower() != "timertrigger" or fn.disabled:
                continue
            schedule = parse_schedule(str(fn.trigger.get("schedule", "")), environ)
            self.timers[fn.name] = _TimerState(
                fn=fn,
                schedule=schedule,
                run_on_startup=bool(fn.trigger.get("runOnStartup")),
            )

    def next_occurrence(self, schedule: Schedule, after: dt.datetime) -> dt.datetime | None:
        if isinstance(schedule, ConstantSchedule):
            return schedule.next_after(after)
        local = after.astimezone(self.tz).replace(tzinfo=None)
        nxt = schedule.next_after(local)
        if nxt is None:
            return None
        return nxt.replace(tzinfo=self.tz).astimezone(UTC)

    def describe(self, name: str, count: int = 5) -> list[dt.datetime]:
        state = self.timers[name]
        out: list[dt.datetime] = []
        t: dt.datetime | None = self.clock.now()
        while t is not None and len(out) < count:
            t = self.next_occurrence(state.schedule, t)
            if t is not None:
                out.append(t)
        return out

    def start(self) -> None:
        for name, state in self.timers.items():
            upcoming = ", ".join(t.astimezone(self.tz).isoformat() for t in self.describe(name))
            log.info(
                "The next 5 occurrences of the '%s' schedule (%s) will be: %s",
                name,
                state.schedule.expression,
                upcoming,
            )
            state.task = asyncio.create_task(self._run(state), name=f"timer:{name}")

    async def stop(self) -> None:
        tasks = [s.task for s in self.timers.values() if s.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
            except Exception:  # pragma: no cover - logged by _run
                log.exception("timer task failed")
        for s in self.timers.values():
            s.task = None

    async def _fire(self, state: _TimerState, past_due: bool) -> None:
        now = self.clock.now()
        nxt = self.next_occurrence(state.schedule, now)
        request = make_timer_request(
            past_due=past_due, last=state.last, next_=nxt, last_updated=now
        )
        state.fired += 1
        try:
            await self._invoke(
                state.fn, request, f"Timer fired at {now.astimezone(self.tz).isoformat()}"
            )
        except Exception:
            log.exception("timer invocation of %s failed", state.fn.name)
        state.last = now

    async def _run(self, state: _TimerState) -> None:
        if state.run_on_startup:
            await self._fire(state, past_due=False)
        while True:
            due = self.next_occurrence(state.schedule, self.clock.now())
            if due is None:
                log.warning("the schedule of %s has no further occurrences", state.fn.name)
                return
            await self.clock.sleep_until(due)
            now = self.clock.now()
            following = self.next_occurrence(state.schedule, due)
            past_due = following is not None and now >= following
            await self._fire(state, past_due=past_due)
