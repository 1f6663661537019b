"""Structured log lines and log-based metrics.

The Functions host ships every log record to Application Insights, so a metric here is
just a log line with a stable shape (``metric=<name> value=<n> ...``) that a KQL query
or a log-based metric can aggregate; no telemetry SDK is imported on the cold path.
Nothing logged here may contain a token, key or connection string: callers pass
identifiers only, and app user ids are logged as a short one-way reference.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import time

logger = logging.getLogger("acs_token_service")
_metrics = logging.getLogger("acs_token_service.metrics")

invocation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "invocation_id", default=None)
#: The app user (as :func:`user_ref`) an adapter is acting for, for its own log events.
current_user: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_user", default=None)

#: The Azure SDK loggers the app sets to WARNING. azure-core's HttpLoggingPolicy logs every
#: request's URL and headers at INFO, and a Table Storage URL holds the row's key
#: (``PartitionKey='u' + base64url(user id)``, a reversible user id). The Python worker sets
#: the root logger to INFO and forwards every record to the host (azure-functions-python-worker
#: dispatcher.py, ``Dispatcher.dispatch_forever``), and host.json's ``logLevel`` filters only
#: on the host side, after the record was built and sent (see
#: Azure/azure-functions-python-worker#248), so only the app can stop these records.
SDK_LOGGERS = ("azure", "azure.core.pipeline.policies.http_logging_policy")


def quiet_sdk_loggers() -> None:
    """Set the Azure SDK loggers to WARNING: no request URL (and no user key in it) is ever
    logged, and a request no longer formats ~17 header lines that nothing may read
    (~130 µs of CPU per Table read with the worker's logging, docs/performance.md).
    Warnings and errors from the SDKs still reach the host."""
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def user_ref(user_id: str) -> str:
    """A stable pseudonymous handle for an app user, safe to log and to correlate."""
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:16]


def _fields(fields: dict[str, object]) -> str:
    inv = invocation_id.get()
    if inv is not None:
        fields = {"invocationId": inv, **fields}
    return " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)


def event(name: str, level: int = logging.INFO, **fields: object) -> None:
    """Log one structured event: ``event=<name> key=value ...``."""
    if logger.isEnabledFor(level):
        logger.log(level, "event=%s %s", name, _fields(fields))


def metric(name: str, value: int = 1, **dims: object) -> None:
    """Count ``name`` by ``value``; dimensions become key=value pairs on the line."""
    if _metrics.isEnabledFor(logging.INFO):
        _metrics.info("metric=%s value=%d %s", name, value, _fields(dims))


#: Seconds a worker sums a hot-path counter before it logs one line with the total.
COUNT_FLUSH_SECONDS = 1.0
_counts: dict[tuple[str, tuple[tuple[str, object], ...]], list[float]] = {}


def count(name: str, **dims: object) -> None:
    """Count one ``name`` event on a hot path: like :func:`metric`, but a worker logs at
    most one line per counter per :data:`COUNT_FLUSH_SECONDS` (the first at once), whose
    ``value`` is the sum since the last line, and without an ``invocationId`` (it covers
    many). Under the worker's logging every line is formatted and sent to the host on
    every call: one line per repeat token was ~0.1 ms of CPU per token in `make bench`,
    the largest part of the service's overhead over the raw SDKs. Counts not yet logged
    when the worker stops (at most one interval's) are lost."""
    key = (name, tuple(dims.items()))
    state = _counts.get(key)
    now = time.monotonic()
    if state is None:
        state = _counts[key] = [0.0, float("-inf")]  # pending count, last line's time
    state[0] += 1
    if now - state[1] >= COUNT_FLUSH_SECONDS:
        pending, state[0], state[1] = int(state[0]), 0.0, now
        if _metrics.isEnabledFor(logging.INFO):
            extra = " ".join(f"{k}={v}" for k, v in dims.items() if v is not None)
            _metrics.info("metric=%s value=%d %s", name, pending, extra)


def reset_counts() -> None:
    """Forget pending counts (a new worker starts with none)."""
    _counts.clear()


class RoundTrips:
    """Counts the HTTP requests the SDK clients really send (every attempt, retries
    included), by kind. Installed as the SDKs' ``raw_request_hook``; benchmarks and tests
    read it to prove the round-trip budget instead of estimating it."""

    __slots__ = ("acs", "table_reads", "table_writes")

    def __init__(self) -> None:
        self.table_reads = 0
        self.table_writes = 0
        self.acs = 0

    def table_hook(self, request: object) -> None:
        method = getattr(getattr(request, "http_request", None), "method", "GET")
        if method == "GET":
            self.table_reads += 1
        else:
            self.table_writes += 1

    def acs_hook(self, request: object) -> None:
        self.acs += 1

    def snapshot(self) -> dict[str, int]:
        return {"tableReads": self.table_reads, "tableWrites": self.table_writes, "acs": self.acs}

    def reset(self) -> None:
        self.table_reads = self.table_writes = self.acs = 0


round_trips = RoundTrips()
