"""NCRONTAB / TimeSpan schedules as the Functions timer trigger understands them.

The timer extension (``Microsoft.Azure.WebJobs.Extensions`` ``TimerSchedule``)
first tries ``CronSchedule.TryCreate`` (NCrontab; six fields *with* seconds,
or five fields without, chosen by the number of space-separated fields), and
falls back to a .NET ``TimeSpan`` ("hh:mm:ss", "d.hh:mm:ss") constant
interval.

``croniter`` (``second_at_beginning=True``, ``day_or=False``: day-of-month AND
day-of-week, as in NCrontab, unlike Vixie cron) parses and computes the next
occurrence; a thin adapter keeps NCrontab's rules where croniter is laxer:

* month and day names are any case-insensitive *prefix* of the English name,
  first match wins (``Jan``, ``mon``, ``Monday``); croniter takes three letters;
* day-of-week is 0-6, Sunday 0: croniter's ``7`` is refused;
* a reversed range (``5-1``) is refused; croniter wraps it around;
* only numbers, names, ``*``, ``,``, ``-`` and ``/``: croniter's ``L``, ``#``,
  ``?`` and ``H`` are refused;
* ``next_after(t)`` is strictly after ``t``.

``%NAME%`` schedules are resolved from app settings (environment variables)
before parsing; a missing setting is an error naming it, as in the host.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from croniter import CroniterBadDateError, CroniterError, croniter

__all__ = [
    "ConstantSchedule",
    "CronSchedule",
    "Schedule",
    "ScheduleError",
    "parse_schedule",
    "resolve_setting_expression",
]

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")  # fmt: skip
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_FIELD_NAMES = ("second", "minute", "hour", "day", "month", "day-of-week")
_NAMES: dict[str, tuple[tuple[str, ...], int]] = {"month": (_MONTHS, 1), "day-of-week": (_DAYS, 0)}


class ScheduleError(ValueError):
    """Invalid schedule expression or unresolvable %SETTING%."""


def _ncrontab_field(name: str, text: str) -> str:
    """One field in croniter's syntax, refused where NCrontab refuses it."""

    def number(match: re.Match[str]) -> str:
        word = match.group(0)
        names, first = _NAMES.get(name, ((), 0))
        for i, full in enumerate(names):
            if full.lower().startswith(word.lower()):
                return str(i + first)
        raise ScheduleError(f"'{word}' is not a valid value for the {name} field")

    field = re.sub(r"[A-Za-z]+", number, text)
    if not re.fullmatch(r"[0-9*,/-]+", field):
        raise ScheduleError(f"'{text}' is not a valid {name} field")
    for low, high in re.findall(r"(\d+)-(\d+)", field):
        if int(low) > int(high):
            raise ScheduleError(f"invalid range {low}-{high} in the {name} field")
    if name == "day-of-week" and any(int(v) > 6 for v in re.findall(r"(?<![/\d])\d+", field)):
        raise ScheduleError(f"'{text}': the day-of-week field is 0-6 (Sunday 0)")
    return field


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
        if len(parts) not in (5, 6):
            raise ScheduleError(
                f"'{expression}' is not a valid CRON expression: expected 6 fields "
                f"(second minute hour day month day-of-week) or 5, got {len(parts)}"
            )
        self.has_seconds = len(parts) == 6
        fields = parts if self.has_seconds else ["0", *parts]
        self._cron = " ".join(map(_ncrontab_field, _FIELD_NAMES, fields))
        try:
            expanded = croniter(self._cron, second_at_beginning=True, day_or=False).expanded
        except CroniterError as exc:
            raise ScheduleError(f"'{expression}' is not a valid CRON expression: {exc}") from None
        # croniter's order is minute hour day month day-of-week second; "*" stays "*".
        self.months = frozenset(range(1, 13) if expanded[3] == ["*"] else map(int, expanded[3]))
        self.dows = frozenset(range(7) if expanded[4] == ["*"] else map(int, expanded[4]))

    def __repr__(self) -> str:
        return f"CronSchedule({self.expression!r})"

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        """First occurrence strictly after ``after`` (same tzinfo; wall-clock)."""
        it = croniter(self._cron, after, second_at_beginning=True, day_or=False)
        try:
            return it.get_next(dt.datetime)  # type: ignore[no-any-return]
        except CroniterBadDateError:  # none at all (e.g. February 30)
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
