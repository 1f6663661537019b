"""NCRONTAB parsing and next-occurrence computations (timer extension semantics)."""

from __future__ import annotations

import datetime as dt

import pytest

from localdev.host.ncrontab import (
    ConstantSchedule,
    CronSchedule,
    ScheduleError,
    parse_schedule,
    resolve_setting_expression,
)

T0 = dt.datetime(2024, 1, 1, 10, 0, 0)  # a Monday


def nxt(expr: str, after: dt.datetime = T0) -> dt.datetime | None:
    return CronSchedule(expr).next_after(after)


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        # every 5 minutes at second 0; strictly after the base time
        ("0 */5 * * * *", T0, dt.datetime(2024, 1, 1, 10, 5, 0)),
        ("0 */5 * * * *", T0.replace(minute=3, second=7), dt.datetime(2024, 1, 1, 10, 5, 0)),
        # every second
        ("* * * * * *", T0, dt.datetime(2024, 1, 1, 10, 0, 1)),
        # once a day at 09:30 -> tomorrow
        ("0 30 9 * * *", T0, dt.datetime(2024, 1, 2, 9, 30, 0)),
        # weekdays 9:30; from Friday evening -> Monday
        ("0 30 9 * * 1-5", dt.datetime(2024, 1, 5, 18, 0), dt.datetime(2024, 1, 8, 9, 30)),
        # names: January Mondays, 9:30
        ("0 30 9 * Jan Mon", dt.datetime(2024, 1, 29, 10, 0), dt.datetime(2025, 1, 6, 9, 30)),
        # hour range with step
        ("0 0 9-17/4 * * *", T0, dt.datetime(2024, 1, 1, 13, 0)),
        # lists
        ("15,45 0 10 * * *", T0, dt.datetime(2024, 1, 1, 10, 0, 15)),
        # 'a/n' means a..max step n
        ("0 10/20 * * * *", T0, dt.datetime(2024, 1, 1, 10, 10)),
        ("0 10/20 * * * *", T0.replace(minute=55), dt.datetime(2024, 1, 1, 11, 10)),
        # the 31st skips short months
        ("0 0 0 31 * *", dt.datetime(2024, 2, 1), dt.datetime(2024, 3, 31)),
        # Feb 29 -> next leap year
        ("0 0 12 29 2 *", dt.datetime(2024, 3, 1), dt.datetime(2028, 2, 29, 12)),
        # day-of-month AND day-of-week (NCrontab): the 13th that is a Friday
        ("0 0 0 13 * 5", T0, dt.datetime(2024, 9, 13)),
        # Sunday is 0
        ("0 0 8 * * 0", T0, dt.datetime(2024, 1, 7, 8)),
        # five fields = no seconds (accepted by the timer extension)
        ("*/15 * * * *", T0.replace(second=30), dt.datetime(2024, 1, 1, 10, 15)),
        # year rollover
        ("0 0 0 1 1 *", dt.datetime(2024, 6, 1), dt.datetime(2025, 1, 1)),
    ],
)
def test_next_occurrence(expr: str, after: dt.datetime, expected: dt.datetime) -> None:
    assert nxt(expr, after) == expected


def test_occurrences_sequence() -> None:
    got = CronSchedule("0 0 */6 * * *").occurrences(T0, 4)
    assert [t.hour for t in got] == [12, 18, 0, 6]
    assert got[2].date() == dt.date(2024, 1, 2)


def test_timezone_is_kept() -> None:
    tz = dt.timezone(dt.timedelta(hours=2))
    got = nxt("0 0 * * * *", T0.replace(tzinfo=tz))
    assert got == dt.datetime(2024, 1, 1, 11, 0, tzinfo=tz)


def test_impossible_schedule_has_no_occurrence() -> None:
    assert nxt("0 0 0 30 2 *") is None


def test_name_prefixes_and_case() -> None:
    a = CronSchedule("0 0 0 * feb tuesday")
    b = CronSchedule("0 0 0 * 2 2")
    assert (a.months, a.dows) == (b.months, b.dows)


@pytest.mark.parametrize(
    "expr",
    [
        "0 60 * * * *",  # minute out of range
        "0 0 24 * * *",
        "0 0 0 0 * *",  # day 0
        "0 0 0 * 13 *",
        "0 0 0 * * 7",  # NCrontab day-of-week is 0-6
        "0 0 0 * * Funday",
        "0 */0 * * * *",
        "* * * *",  # 4 fields
        "* * * * * * *",  # 7 fields
        "0 5-1 * * * *",
        "0 a * * * *",
    ],
)
def test_invalid_expressions(expr: str) -> None:
    with pytest.raises(ScheduleError):
        CronSchedule(expr)


def test_timespan_schedule() -> None:
    s = parse_schedule("00:00:30", {})
    assert isinstance(s, ConstantSchedule)
    assert s.next_after(T0) == T0 + dt.timedelta(seconds=30)
    assert parse_schedule("1.02:00:00", {}).next_after(T0) == T0 + dt.timedelta(days=1, hours=2)


def test_setting_resolution() -> None:
    s = parse_schedule("%MY_SCHEDULE%", {"MY_SCHEDULE": "0 0 * * * *"})
    assert isinstance(s, CronSchedule)
    assert s.next_after(T0) == T0 + dt.timedelta(hours=1)
    assert resolve_setting_expression("0 %M% * * * *", {"M": "15"}) == "0 15 * * * *"


def test_missing_setting_is_an_error_naming_it() -> None:
    with pytest.raises(ScheduleError, match="MISSING_SCHEDULE"):
        parse_schedule("%MISSING_SCHEDULE%", {})


def test_unrecognised_expression_message() -> None:
    with pytest.raises(ScheduleError, match="not recognized"):
        parse_schedule("every five minutes", {})


# Where croniter (which computes the occurrences) is laxer than NCrontab, the adapter keeps
# NCrontab's rules: NCrontab's CrontabFieldKind.DayOfWeek is 0-6, ranges must not be
# reversed, names are case-insensitive prefixes, and there are no L, #, ? or H extensions.
@pytest.mark.parametrize(
    "expr",
    ["0 0 0 * * 0-7", "0 0 0 * * 7-1", "0 0 0 * * 5-7", "0 0 23-1 * * *", "0 0 0 L * *",
     "0 0 0 * * 5#2", "0 0 0 ? * *", "0 H * * * *", "0 0 0 * * 5L"],
)
def test_croniter_extensions_are_refused(expr: str) -> None:
    with pytest.raises(ScheduleError):
        CronSchedule(expr)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("0 0 8 * * T", dt.datetime(2024, 1, 2, 8)),         # first prefix match: Tuesday
        ("0 0 8 * * sAt", dt.datetime(2024, 1, 6, 8)),
        ("0 0 8 * * Wednesday", dt.datetime(2024, 1, 3, 8)),
        ("0 0 8 1 Ma *", dt.datetime(2024, 3, 1, 8)),        # March before May
        ("0 0 8 * * */3", dt.datetime(2024, 1, 3, 8)),       # a step is not a day value
        ("0 0 8 * * 1/12", dt.datetime(2024, 1, 8, 8)),
    ],
)
def test_ncrontab_names_and_steps(expr: str, expected: dt.datetime) -> None:
    assert nxt(expr) == expected
