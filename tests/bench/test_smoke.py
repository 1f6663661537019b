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
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(output.read_text())

    # 1. Round trips, counted: exact where the design fixes them.
    rt = results["roundTrips"]
    assert _counts(rt["ours"]["firstToken"]) == (1, 2, 1)
    assert _counts(rt["ours"]["repeatToken"]) == (1, 0, 1)
    assert rt["ours"]["firstToken"]["deterministic"] and rt["ours"]["repeatToken"]["deterministic"]
    # Both ceilings do the repeat token's unavoidable work, exactly: the bare function
    # through the invoker (the targets' ceiling) and the raw SDK loop (informational).
    assert _counts(rt["ceiling"]["repeatToken"]) == (1, 0, 1)
    assert _counts(rt["rawCeiling"]["repeatToken"]) == (1, 0, 1)
    assert rt["ceiling"]["repeatToken"]["deterministic"]
    assert _counts(rt["quickstart"]["firstToken"]) == (0, 0, 2)
    for op in ("revoke", "delete", "purgePerUser", "purgePerRun"):
        assert all(_number(v) for v in _counts(rt["ours"][op])), op

    # 2./3. Throughput, latency and CPU per token at every concurrency level.
    for scenario in ("ours", "ceiling", "rawCeiling", "quickstart"):
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
        assert _number(cold["firstToken"]["freshWorker"][side]["medianMs"])
    assert cold["firstToken"]["freshWorker"]["preimported"] == ["asyncio", "azure.functions"]
    # The fresh-worker figure is the package as deployed; the one without bytecode beside it.
    fw = cold["firstToken"]["freshWorker"]
    assert fw["artifact"] == "as deployed: app bytecode shipped (checked-hash)"
    assert _number(fw["oursFromSource"]["medianMs"]) and _number(fw["ratioFromSource"])
    assert "fresh worker" in proc.stdout and "asyncio + azure.functions" in proc.stdout

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

    # 7. Login storm: every user got exactly one identity and a token; the emulator
    # throttled (the smoke storm is sized to need several windows), and every 429 the
    # clients saw carried a Retry-After they waited.
    storm = results["storm"]
    assert storm["usersWithToken"] == storm["users"] > 0
    assert storm["identitiesCreated"] == storm["users"] == storm["distinctAcsIds"]
    assert storm["duplicateIdentities"] == 0 and storm["tokenMappingMismatches"] == 0
    assert storm["failures"] == {} and storm["failedAnswers"] == 0
    assert storm["statuses"]["200"] == storm["users"]
    assert storm["emulatorThrottled"]["createIdentity"] > 0
    assert storm["waitsRequested"] == storm["statuses"].get("429", 0) > 0
    assert _number(storm["drainedSeconds"]) and _number(storm["floorSeconds"])

    # 8. Pairs: ours and the ceiling round by round, each pair printed.
    pairs = results["pairs64"]["pairs"]
    assert len(pairs) == 2 and all(_number(p["cpuRatio"]) for p in pairs)
    assert "Pairs at concurrency 64" in proc.stdout
    # Which ceiling the targets use is stated; the raw SDK loop's ratios stay beside it.
    assert results["meta"]["ceiling"].startswith("ceiling (targets): a bare v2 function")
    assert results["meta"]["rawCeiling"].startswith("rawCeiling (informational")
    assert "Targets use the ceiling (targets): a bare v2 function" in proc.stdout
    raw = results["pairs64RawCeiling"]
    assert len(raw["pairs"]) == 2 and _number(raw["medianCpuRatio"])
    assert [p["oursCpuMs"] for p in raw["pairs"]] == [p["oursCpuMs"] for p in pairs]
    assert "against the raw ceiling (informational" in proc.stdout
    assert results["meta"]["logging"].startswith("as the Functions worker")

    # Targets: each one measured and judged, and shown in the printed table.
    targets = results["targets"]
    assert len(targets) == 12
    for target in targets:
        assert isinstance(target["pass"], bool)
        assert target["measured"] is None or _number(target["measured"])
        assert target["target"] in proc.stdout
    assert proc.stdout.count("PASS") + proc.stdout.count("FAIL") >= len(targets)
