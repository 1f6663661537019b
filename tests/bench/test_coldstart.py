"""`python -m bench.coldstart` reproduces the cold-start figures of `make bench` alone:
it starts Azurite, the issuer and the emulator itself and prints the fresh-worker ratio
and the stage profile of both sides. No figure is asserted (speed lives in `make bench`);
that it runs, and reports every line it promises from real first tokens, is.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_coldstart_entry_point_prints_the_ratio_and_both_stage_profiles() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.coldstart", "--runs", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    assert re.search(r"first token in a fresh worker \(asyncio \+ azure\.functions imported "
                     r"first\): ours [\d.]+ ms, ceiling [\d.]+ ms = [\d.]+ x", out), out
    # The fresh-worker figure is the package as deployed; from source beside it.
    assert re.search(r"= [\d.]+ x \(target <= 1\.15\), as deployed: app bytecode shipped "
                     r"\(checked-hash\)\n", out), out
    assert re.search(r"\n    from source \(the package without the app's bytecode\): ours "
                     r"[\d.]+ ms = [\d.]+ x\n", out), out
    assert re.search(r"import \+ index: app [\d.]+ ms, empty FunctionApp [\d.]+ ms", out), out
    ours, _, ceiling = out.partition("  ceiling: ")
    # Each side's stages, in the order they ran; both sides import what the worker has.
    for stage in ("import azure.functions", "import function_app + index",
                  "settings + SDK clients", "JWKS fetch (discovery + keys)",
                  "verify + Table read + ACS call"):
        assert re.search(rf"\n    {re.escape(stage)} +[\d.]+\n", ours), (stage, out)
    for stage in ("import azure.functions", "import aiohttp", "SDK clients",
                  "Table read (get_entity)", "ACS call (get_token)"):
        assert re.search(rf"\n    {re.escape(stage)} +[\d.]+(\n|$)", ceiling), (stage, out)
