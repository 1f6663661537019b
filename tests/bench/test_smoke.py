"""`python -m bench --smoke` runs every scenario with tiny counts and writes every figure.

Targets are not asserted here (tiny counts say nothing about them); the round-trip
counts are, because they are deterministic.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEVELS = ("1", "16", "64")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _counts(figure: dict[str, int]) -> tuple[int, int, int]:
    return figure["tableReads"], figure["tableWrites"], figure["acs"]


def test_smoke_run_writes_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(output.read_text())

    # 1. Round trips, counted: exact where the design fixes them.
    rt = results["roundTrips"]
    assert _counts(rt["ours"]["firstToken"]) == (1, 2, 1)
    assert _counts(rt["ours"]["repeatToken"]) == (1, 0, 1)
    assert rt["ours"]["firstToken"]["deterministic"] and rt["ours"]["repeatToken"]["deterministic"]
    assert _counts(rt["ceiling"]["repeatToken"]) == (1, 0, 1)
    assert _counts(rt["quickstart"]["firstToken"]) == (0, 0, 2)
    for op in ("revoke", "delete", "purgePerUser", "purgePerRun"):
        assert all(_number(v) for v in _counts(rt["ours"][op])), op

    # 2./3. Throughput, latency and CPU per token at every concurrency level.
    for scenario in ("ours", "ceiling", "quickstart"):
        levels = results["throughput"][scenario]
        assert set(LEVELS) <= set(levels), scenario
        for level in LEVELS:
            m = levels[level]
            assert m["failures"] == 0, (scenario, level, m)
            for key in ("throughput", "p50Ms", "p99Ms", "cpuMsPerRequest"):
                assert _number(m[key]) and m[key] > 0, (scenario, level, key, m)
        assert _number(results["cpuPerToken"][scenario]) and results["cpuPerToken"][scenario] > 0

    # 4. Cold start.
    cold = results["coldStart"]
    for side in ("app", "empty"):
        assert _number(cold["importIndex"][side]["medianMs"])
    for side in ("ours", "ceiling"):
        assert _number(cold["firstToken"][side]["medianMs"])

    # 5. Memory.
    mem = results["memory"]
    for key in ("rssFirstMb", "rssSecondMb", "growthPct"):
        assert _number(mem[key]), key
    assert mem["tokensAtSecond"] > mem["tokensAtFirst"] > 0

    # 6. Purge.
    purge = results["purge"]
    assert purge["report"]["purged"] == purge["users"] > 0
    assert _number(purge["deletesPerSecond"]) and _number(purge["shareOfLimit"])
    assert "deleteIdentity" in purge["emulatorThrottled"]

    # Targets: each one measured and judged, and shown in the printed table.
    targets = results["targets"]
    assert len(targets) == 9
    for target in targets:
        assert isinstance(target["pass"], bool)
        assert target["measured"] is None or _number(target["measured"])
        assert target["target"] in proc.stdout
    assert proc.stdout.count("PASS") + proc.stdout.count("FAIL") >= len(targets)
