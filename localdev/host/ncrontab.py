"""NCRONTAB / TimeSpan schedules as the Functions timer trigger understands them.

The timer extension (``Microsoft.Azure.WebJobs.Extensions`` ``TimerSchedule``)
first tries ``CronSchedule.TryCreate`` (NCrontab; six fields *with* seconds,
or five fields without, chosen by the number of space-separated fields), and
falls back to a .NET ``TimeSpan`` ("hh:mm:ss", "d.hh:mm:ss") constant
interval.  NCrontab semantics reproduced here:

* fields: second minute hour day month day-of-week (seconds optional);
* ``*``, ``a``, ``a-b``, ``a,b,c``, ``*/n``, ``a-b/n`` and ``a/n`` (= a-max/n);
* month and day names (any case-insensitive *prefix* of the English name,
  first match wins: ``Jan``, ``mon``, ``Monday``); day-of-week is 0-6, Sunday 0;
* day-of-month and day-of-week are combined with AND (unlike Vixie cron);
* ``next_after(t)`` is strictly after ``t``.

``%NAME%`` schedules are resolved from app settings (environment variables)
before parsing; a missing setting is an error naming it, as in the host.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ConstantSchedule",
    "CronSchedule",
    "Schedule",
    "ScheduleError",
    "parse_schedule",
    "resolve_setting_expression",
]

_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]

# A schedule with no occurrence in this many days (e.g. Feb 30) has none at all.
_SEARCH_DAYS = 366 * 8


class ScheduleError(ValueError):
    """Invalid schedule expression or unresolvable %SETTING%."""


@dataclass(frozen=True)
class _Field:
    name: str
    lo: int
    hi: int
    names: tuple[str, ...] | None = None

    def parse_value(self, text: str) -> int:
        if not text:
            raise ScheduleError(f"empty value in {self.name} field")
        if text[0].isdigit():
            if not text.isdigit():
                raise ScheduleError(f"'{text}' is not a valid {self.name} value")
            return int(text)
        if self.names is None:
            raise ScheduleError(
                f"'{text}' is not a valid value for the {self.name} field; "
                f"it must be a number between {self.lo} and {self.hi}"
            )
        for i, full in enumerate(self.names):
            if full.lower().startswith(text.lower()):
                return i + self.lo
        raise ScheduleError(f"'{text}' is not a known {self.name} name")

    def parse(self, expr: str) -> frozenset[int]:
        values: set[int] = set()
        for token in expr.split(","):
            self._parse_token(token, values)
        return frozenset(values)

    def _parse_token(self, token: str, out: set[int]) -> None:
        if not token:
            raise ScheduleError(f"empty list item in {self.name} field")
        step = 1
        if "/" in token:
            token, step_text = token.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"invalid step '/{step_text}' in {self.name} field")
            step = int(step_text)
            if not token:
                raise ScheduleError(f"missing range before '/' in {self.name} field")
        if token == "*":
            first, last = self.lo, self.hi
        elif "-" in token[1:]:
            i = token.index("-", 1)
            first, last = self.parse_value(token[:i]), self.parse_value(token[i + 1 :])
        else:
            first = self.parse_value(token)
            last = first if step == 1 else self.hi
        for v in (first, last):
            if not self.lo <= v <= self.hi:
                raise ScheduleError(
                    f"{v} is out of range for the {self.name} field ({self.lo}-{self.hi})"
                )
        if first > last:
            raise ScheduleError(f"invalid range {first}-{last} in {self.name} field")
        out.update(range(first, last + 1, step))


_SECOND = _Field("second", 0, 59)
_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DAY = _Field("day", 1, 31)
_MONTH = _Field("month", 1, 12, tuple(_MONTHS))
_DOW = _Field("day-of-week", 0, 6, tuple(_DAYS))


class Schedule:
    """Common interface: ``next_after(t)`` gives the first occurrence > t."""

    expression: str

    def next_after(self, after: dt.datetime) -> dt.datetime | None:  # pragma: no cover
        raise NotImplementedError

    def occurrences(self, after: dt.datetime, count: int) -> list[dt.datetime]:
        result: list[dt.datetime] = []
        t: dt.datetime | None = after
        while len(result) < count and t is not None:
            t = self.next_after(t)
            if t is not None:
                result.append(t)
        return result


class CronSchedule(Schedule):
    """An NCRONTAB expression (5 or 6 fields)."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        # NCrontab splits on single spaces: "has seconds" = field count != 5.
        parts = expression.strip().split()
        if len(parts) == 5:
            self.has_seconds = False
            sec, rest = frozenset({0}), parts
        elif len(parts) == 6:
            self.has_seconds = True
            sec, rest = _SECOND.parse(parts[0]), parts[1:]
        else:
            raise ScheduleError(
                f"'{expression}' is not a valid CRON expression: expected 6 fields "
                f"(second minute hour day month day-of-week) or 5, got {len(parts)}"
            )
        self.seconds = sorted(sec)
        self.minutes = sorted(_MINUTE.parse(rest[0]))
        self.hours = sorted(_HOUR.parse(rest[1]))
        self.days = _DAY.parse(rest[2])
        self.months = _MONTH.parse(rest[3])
        self.dows = _DOW.parse(rest[4])

    def __repr__(self) -> str:
        return f"CronSchedule({self.expression!r})"

    def _first_time_in_day(self, after: dt.time | None) -> dt.time | None:
        """First (h, m, s) of the schedule strictly after ``after`` (None = any)."""
        for h in self.hours:
            if after is not None and h < after.hour:
                continue
            for m in self.minutes:
                if after is not None and (h, m) < (after.hour, after.minute):
                    continue
                for s in self.seconds:
                    cand = dt.time(h, m, s)
                    if after is None or cand > after:
                        return cand
        return None

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        """First occurrence strictly after ``after`` (same tzinfo; wall-clock)."""
        base = after.replace(microsecond=0)
        if not self.has_seconds:
            base = base.replace(second=0)
        day = base.date()
        base_time: dt.time | None = base.time()
        for _ in range(_SEARCH_DAYS):
            if (
                day.month in self.months
                and day.day in self.days
                and (day.weekday() + 1) % 7 in self.dows
            ):
                t = self._first_time_in_day(base_time)
                if t is not None:
                    return dt.datetime.combine(day, t, tzinfo=after.tzinfo)
            day += dt.timedelta(days=1)
            base_time = None
            if day.day == 1 and day.month not in self.months:
                # skip whole months quickly
                while day.month not in self.months:
                    days_in = calendar.monthrange(day.year, day.month)[1]
                    day += dt.timedelta(days=days_in)
        return None


class ConstantSchedule(Schedule):
    """A TimeSpan interval ("hh:mm:ss"): fires every ``interval``."""

    _RE = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$")

    def __init__(self, expression: str) -> None:
        self.expression = expression
        m = self._RE.match(expression.strip())
        if not m:
            raise ScheduleError(f"'{expression}' is not a valid TimeSpan")
        days, hours, minutes, seconds, frac = m.groups()
        if int(hours) > 23 or int(minutes) > 59 or int(seconds or 0) > 59:
            raise ScheduleError(f"'{expression}' is not a valid TimeSpan")
        self.interval = dt.timedelta(
            days=int(days or 0),
            hours=int(hours),
            minutes=int(minutes),
            seconds=int(seconds or 0),
            microseconds=int((frac or "0").ljust(7, "0")[:7]) // 10,
        )
        if self.interval <= dt.timedelta(0):
            raise ScheduleError(f"'{expression}': the interval must be positive")

    def __repr__(self) -> str:
        return f"ConstantSchedule({self.expression!r})"

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        return after + self.interval


_SETTING_RE = re.compile(r"%([^%]+)%")


def resolve_setting_expression(expression: str, environ: Mapping[str, str]) -> str:
    """Replace ``%NAME%`` tokens by app settings, like the host's name resolver."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in environ:
            raise ScheduleError(
                f"'%{name}%' does not resolve to a value: app setting '{name}' is not set"
            )
        return environ[name]

    return _SETTING_RE.sub(sub, expression)


def parse_schedule(expression: str, environ: Mapping[str, str] | None = None) -> Schedule:
    """Resolve ``%SETTING%`` and parse as NCRONTAB, else as a TimeSpan."""
    import os

    resolved = resolve_setting_expression(expression, os.environ if environ is None else environ)
    try:
        return CronSchedule(resolved)
    except ScheduleError as cron_error:
        if ":" in resolved and len(resolved.split()) == 1:
            return ConstantSchedule(resolved)
        raise ScheduleError(
            f"The schedule expression '{resolved}' was not recognized as a valid cron "
            f"expression or timespan string: {cron_error}"
        ) from None
