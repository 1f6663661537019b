"""``telemetry.count``: a hot-path counter logs its first event at once, then at most one
line per interval whose value is the sum since the last line (so ``sum(value)`` over the
lines is the number of events, as for every metric line)."""

from __future__ import annotations

import logging
import re

import pytest

from shared import telemetry


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(telemetry.time, "monotonic", lambda: now[0])
    telemetry.reset_counts()
    yield now
    telemetry.reset_counts()


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    out = []
    for record in caplog.records:
        match = re.match(r"metric=tokens_issued value=(\d+) (.*)$", record.getMessage())
        if record.name == "acs_token_service.metrics" and match:
            out.append((int(match[1]), match[2]))
    return out


def test_count_sums_events_between_lines(clock, caplog):
    caplog.set_level(logging.INFO, logger="acs_token_service.metrics")
    telemetry.count("tokens_issued", first=False)  # the first: logged at once
    assert lines(caplog) == [(1, "first=False")]
    for _ in range(5):
        clock[0] += telemetry.COUNT_FLUSH_SECONDS / 10
        telemetry.count("tokens_issued", first=False)
    assert lines(caplog) == [(1, "first=False")]  # within the interval: summed, not logged
    clock[0] += telemetry.COUNT_FLUSH_SECONDS
    telemetry.count("tokens_issued", first=False)
    assert lines(caplog) == [(1, "first=False"), (6, "first=False")]
    assert sum(v for v, _ in lines(caplog)) == 7


def test_counts_start_afresh_after_reset(clock, caplog):
    caplog.set_level(logging.INFO, logger="acs_token_service.metrics")
    telemetry.count("tokens_issued", first=False)
    telemetry.count("tokens_issued", first=False)  # pending
    telemetry.reset_counts()  # a new worker (runtime.reset) starts with none pending
    telemetry.count("tokens_issued", first=False)
    assert lines(caplog) == [(1, "first=False"), (1, "first=False")]
