"""Closed-loop load on one event loop, and the process measurements taken around it.

Light on purpose (stdlib only): it is imported by the worker processes before they
import the code under test.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import math
import os
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

Op = Callable[[int], Awaitable[bool]]


def cpu_seconds() -> float:
    """User + system CPU of this whole process (every thread), not wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb(collect: bool = True) -> float:
    """Resident set size of this process in MiB (after a full GC, for a steadier reading)."""
    import psutil

    if collect:
        gc.collect()
    return float(psutil.Process(os.getpid()).memory_info().rss) / (1024 * 1024)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class _GcClock:
    """CPU time of the collecting thread in the cyclic garbage collector (``gc.callbacks``),
    by generation: a cost that depends on how many objects a worker keeps and how many
    each request has in flight, reported per round beside the CPU it is part of."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._began = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.thread_time()
        else:
            generation = int(info["generation"])
            self.seconds[generation] += time.thread_time() - self._began
            self.collections[generation] += 1

    def snapshot(self) -> tuple[list[float], list[int]]:
        return list(self.seconds), list(self.collections)


GC_CLOCK = _GcClock()


async def closed_loop(op: Op, requests: int, concurrency: int, *, start: int = 0,
                      keep_latencies: bool = False) -> dict[str, Any]:
    """``concurrency`` lanes, each sending its next request as soon as the last one answered,
    until ``requests`` requests were sent. ``op(i)`` returns True on success.

    Reports throughput (requests per wall second), latency percentiles, and the process CPU
    spent per request (load generation included; it is the same for every scenario).
    """
    counter = itertools.count(start)
    end = start + requests
    latencies: list[float] = []
    failures = 0

    async def lane() -> None:
        nonlocal failures
        while True:
            i = next(counter)
            if i >= end:
                return
            began = time.perf_counter()
            try:
                ok = await op(i)
            except Exception:  # a failed request is counted, not fatal
                ok = False
            latencies.append(time.perf_counter() - began)
            if not ok:
                failures += 1

    gc0, n0 = GC_CLOCK.snapshot()
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
    gc1, n1 = GC_CLOCK.snapshot()
    latencies.sort()
    extra = {"latenciesMs": [round(x * 1000, 3) for x in latencies]} if keep_latencies else {}
    return {**extra,
        "concurrency": concurrency,
        "requests": requests,
        "failures": failures,
        "seconds": round(wall, 4),
        "throughput": round(requests / wall, 2) if wall > 0 else 0.0,
        "p50Ms": round(percentile(latencies, 50) * 1000, 2),
        "p99Ms": round(percentile(latencies, 99) * 1000, 2),
        "cpuMsPerRequest": round(cpu / requests * 1000, 4) if requests else 0.0,
        "cpuSeconds": round(cpu, 4),
        "gcMsPerRequest": round((sum(gc1) - sum(gc0)) / requests * 1000, 4) if requests else 0.0,
        "gcCollections": [b - a for a, b in zip(n0, n1, strict=True)],
        "gcMsByGeneration": [round((b - a) * 1000, 2) for a, b in zip(gc0, gc1, strict=True)],
        # objects the collector tracks after the round (frozen ones excluded)
        "gcTracked": len(gc.get_objects()) if requests >= 500 else None,
    }


def pooled(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Several rounds of one level as one figure. Throughput is the median round's (one
    burst of background load on a shared machine moves one round, not the figure); the
    pooled throughput (total requests over total time) is kept beside it. Percentiles are
    over every latency, CPU over every request; each round is kept too."""
    latencies = sorted(x for r in rounds for x in r["latenciesMs"])
    requests = sum(r["requests"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    cpu = sum(r["cpuSeconds"] for r in rounds)
    return {
        "concurrency": rounds[0]["concurrency"],
        "requests": requests,
        "failures": sum(r["failures"] for r in rounds),
        "seconds": round(seconds, 4),
        "throughput": round(statistics.median(r["throughput"] for r in rounds), 2),
        "pooledThroughput": round(requests / seconds, 2) if seconds > 0 else 0.0,
        "p50Ms": round(percentile(latencies, 50), 2),
        "p99Ms": round(percentile(latencies, 99), 2),
        "cpuMsPerRequest": round(cpu / requests * 1000, 4) if requests else 0.0,
        "rounds": [{k: v for k, v in r.items() if k != "latenciesMs"} for r in rounds],
    }


def pairs(ours: list[dict[str, Any]], ceiling: list[dict[str, Any]]) -> dict[str, Any]:
    """Round i of ours against round i of the ceiling (they ran back to back, in ABBA
    order, so each pair met the same background load): each pair's ratios, and their
    medians, which are the figures judged against the targets."""
    rows = []
    for a, b in zip(ours, ceiling, strict=True):
        rows.append({
            "oursThroughput": a["throughput"], "ceilingThroughput": b["throughput"],
            "throughputRatio": round(a["throughput"] / b["throughput"], 4),
            "oursCpuMs": a["cpuMsPerRequest"], "ceilingCpuMs": b["cpuMsPerRequest"],
            "cpuRatio": round(a["cpuMsPerRequest"] / b["cpuMsPerRequest"], 4),
            "oursGcMs": a.get("gcMsPerRequest"), "ceilingGcMs": b.get("gcMsPerRequest"),
        })
    return {
        "pairs": rows,
        "medianThroughputRatio": round(statistics.median(r["throughputRatio"] for r in rows), 4)
        if rows else None,
        "medianCpuRatio": round(statistics.median(r["cpuRatio"] for r in rows), 4)
        if rows else None,
    }


class WorkerLogForwarder:
    """Logging as the Python worker configures it once its gRPC channel is up
    (azure-functions-python-worker, dispatcher.py ``Dispatcher.dispatch_forever``): the
    root logger at INFO and one handler on it that formats every record
    (``AsyncLoggingHandler.emit``), wraps it in a message (``Dispatcher.on_logging``: level,
    message, category, invocation id) and queues it for the gRPC thread, which sends it to
    the host. Here a daemon thread drains the queue, as the gRPC thread would."""

    def __init__(self) -> None:
        import logging
        import queue
        import threading

        self.sent = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        forwarder = self

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                message = self.format(record)
                forwarder._queue.put({"level": record.levelno, "message": message,
                                      "category": record.name,
                                      "log_category": "User"})

        self.handler = Handler()
        root = logging.getLogger()
        root.setLevel(logging.INFO)
        root.addHandler(self.handler)
        threading.Thread(target=self._drain, name="grpc-thread", daemon=True).start()

    def _drain(self) -> None:
        while True:
            self._queue.get()
            self.sent += 1


def emulator_stats(cfg: dict[str, Any]) -> dict[str, Any]:
    """The emulator's counters (`/_emulator/stats`), read from a benchmark worker."""
    import ssl
    import urllib.request

    context = ssl.create_default_context(cafile=cfg["emulatorCaFile"])
    url = cfg["emulatorEndpoint"].rstrip("/") + "/_emulator/stats"
    with urllib.request.urlopen(url, timeout=10, context=context) as response:
        stats: dict[str, Any] = json.loads(response.read())
    return stats
