"""Targets (as ratios within one run) and the printed table."""

from __future__ import annotations

import textwrap
from typing import Any


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    tp = results["throughput"]
    rows: list[dict[str, Any]] = []

    def add(name: str, goal: str, measured: float | None, ok: bool | None, detail: str) -> None:
        rows.append({"target": name, "goal": goal,
                     "measured": None if measured is None else round(measured, 4),
                     "pass": bool(ok), "detail": detail})

    rt = results["roundTrips"]["ours"]
    first, repeat = rt["firstToken"], rt["repeatToken"]
    add("round trips: first token = 1 read + 2 writes + 1 ACS", "1+2+1", None,
        (first["tableReads"], first["tableWrites"], first["acs"]) == (1, 2, 1),
        f"{first['tableReads']}+{first['tableWrites']}+{first['acs']}")
    add("round trips: repeat token = 1 read + 0 writes + 1 ACS", "1+0+1", None,
        (repeat["tableReads"], repeat["tableWrites"], repeat["acs"]) == (1, 0, 1),
        f"{repeat['tableReads']}+{repeat['tableWrites']}+{repeat['acs']}")

    ours64, quick64 = (tp[s].get("64", {}).get("throughput") for s in ("ours", "quickstart"))
    pr = results["pairs64"]
    n = len(pr["pairs"])
    r = pr["medianThroughputRatio"]
    add("throughput ours/ceiling at concurrency 64, median of pairs", ">= 0.95", r,
        r is not None and r >= 0.95 and n >= 3,
        f"{n} pairs: " + ", ".join(f"{p['throughputRatio']:.3f}" for p in pr["pairs"]))
    r = pr["medianCpuRatio"]
    add("CPU per token ours/ceiling at concurrency 64, median of pairs", "<= 1.1", r,
        r is not None and r <= 1.1 and n >= 3,
        f"{n} pairs: " + ", ".join(f"{p['cpuRatio']:.3f}" for p in pr["pairs"]))
    r = _ratio(ours64, quick64)
    add("throughput ours/quickstart at concurrency 64", ">= 5", r, r is not None and r >= 5,
        f"{ours64} vs {quick64} tokens/s")
    cold = results["coldStart"]["importIndex"]
    extra = cold["app"]["medianMs"] - cold["empty"]["medianMs"]
    add("cold import+index: app - empty app", "<= 30 ms", extra, extra <= 30,
        f"{cold['app']['medianMs']} vs {cold['empty']['medianMs']} ms")
    fw = results["coldStart"]["firstToken"]["freshWorker"]
    r = _ratio(fw["ours"]["medianMs"], fw["ceiling"]["medianMs"])
    add("first token in a fresh worker ours/ceiling", "<= 1.15", r, r is not None and r <= 1.15,
        f"{fw['ours']['medianMs']} vs {fw['ceiling']['medianMs']} ms "
        f"({' + '.join(fw['preimported'])} imported first, as by the worker)")
    mem = results["memory"]
    add(f"RSS growth {mem['tokensAtFirst']:,} -> {mem['tokensAtSecond']:,} tokens", "<= 20 %",
        mem["growthPct"], mem["growthPct"] <= 20,
        f"{mem['rssFirstMb']} -> {mem['rssSecondMb']} MiB")
    purge = results["purge"]
    no429 = (purge["emulatorThrottled"].get("deleteIdentity", 0) == 0
             and purge["report"]["throttled"] == 0 and purge["report"]["failed"] == 0
             and purge["report"]["purged"] == purge["users"])
    share = purge["shareOfLimit"]
    add("purge rate / delete limit, no request failing on 429", ">= 0.90, 0 x 429", share,
        share >= 0.90 and no429,
        f"{purge['deletesPerSecond']}/s of {purge['limitPerSecond']}/s; 429s: "
        f"{purge['emulatorThrottled'].get('deleteIdentity', 0)}, failed: "
        f"{purge['report']['failed']}")
    storm = results.get("storm")
    if storm is not None:
        over = storm["drainedOverFloor"]
        failed = storm["failedAnswers"] + sum(storm["failures"].values())
        add(f"login storm: {storm['users']:,} new users drained / floor", "<= 1.15", over,
            over is not None and over <= 1.15,
            f"{storm['drainedSeconds']} s vs floor {storm['floorSeconds']} s "
            f"({storm['limit']}/{storm['windowSeconds']:g} s)")
        add("login storm: failures (5xx, other 4xx, timeouts)", "0", failed, failed == 0,
            f"statuses {storm['statuses']}; client failures {storm['failures'] or 0}")
        dup = storm["duplicateIdentities"]
        ok = (dup == 0 and storm["identitiesCreated"] == storm["users"]
              and storm["distinctAcsIds"] == storm["usersMapped"] == storm["users"]
              and storm["tokenMappingMismatches"] == 0)
        add("login storm: identities per user", "exactly 1", storm["identitiesPerUser"], ok,
            f"{storm['identitiesCreated']} created for {storm['users']} users, "
            f"{storm['distinctAcsIds']} distinct mapped, duplicates {dup}")
    return rows


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec) if spec else str(value)


def table(results: dict[str, Any]) -> str:
    meta = results["meta"]
    out: list[str] = []
    w = out.append
    w(f"ACS token service benchmark ({meta['mode']}): ACS latency {meta['acsLatencyMs']} ms, "
      f"{meta['cpus']} CPUs, Python {meta['python']}, {meta['durationSeconds']:.0f} s")
    w("")
    w("Round trips per operation (counted by raw_request_hook)   table reads  writes  ACS")
    rt = results["roundTrips"]
    rows = [
        ("ours       first token", rt["ours"]["firstToken"]),
        ("ours       repeat token", rt["ours"]["repeatToken"]),
        ("ours       revoke", rt["ours"]["revoke"]),
        ("ours       delete", rt["ours"]["delete"]),
        ("ours       purge, per user", rt["ours"]["purgePerUser"]),
        ("ours       purge, fixed per run", rt["ours"]["purgePerRun"]),
        ("ceiling    repeat token (bare function, invoker)", rt["ceiling"]["repeatToken"]),
        ("raw ceiling repeat token (raw SDK loop)", rt.get("rawCeiling", {}).get(
            "repeatToken", {"tableReads": None, "tableWrites": None, "acs": None})),
        ("quickstart token (new identity)", rt["quickstart"]["firstToken"]),
    ]
    for name, c in rows:
        w(f"  {name:<56}{_fmt(c['tableReads']):>6}{_fmt(c['tableWrites']):>8}"
          f"{_fmt(c['acs']):>5}")
    w("")
    w("Token throughput and latency (closed loop, fixed request counts; ours/ceiling: "
      "median of interleaved rounds)")
    w(f"  {'scenario':<24}{'conc':>5}{'requests':>10}{'tokens/s':>10}{'p50 ms':>9}"
      f"{'p99 ms':>9}{'CPU ms/tok':>12}{'failed':>8}")
    tp = results["throughput"]
    for label, key in (("ours repeat token", "ours"), ("ceiling repeat token", "ceiling"),
                       ("raw ceiling (informat.)", "rawCeiling"),
                       ("quickstart", "quickstart"), ("ours first token", "oursFirstToken")):
        for conc, m in tp.get(key, {}).items():
            w(f"  {label:<24}{conc:>5}{m['requests']:>10}{m['throughput']:>10.1f}"
              f"{m['p50Ms']:>9.1f}{m['p99Ms']:>9.1f}{m['cpuMsPerRequest']:>12.3f}"
              f"{m['failures']:>8}")
    cpu = results["cpuPerToken"]
    w(f"  CPU per token at concurrency 64 (worker process, user+sys): ours {cpu['ours']} ms, "
      f"ceiling {cpu['ceiling']} ms, raw ceiling {cpu.get('rawCeiling', '-')} ms, "
      f"quickstart {cpu['quickstart']} ms")
    for line in textwrap.wrap(f"Targets use the {meta.get('ceiling', 'ceiling')}; "
                              f"beside it: {meta.get('rawCeiling', '-')}", width=96):
        w(f"  {line}")
    w(f"  Logging: {meta.get('logging', '-')}")
    w("  Pairs at concurrency 64 (ours round i, ceiling round i, back to back):")
    w(f"    {'pair':>4}{'ours tok/s':>12}{'ceil tok/s':>12}{'ratio':>8}"
      f"{'ours CPU ms':>13}{'ceil CPU ms':>13}{'ratio':>8}")
    pr = results["pairs64"]
    for i, p in enumerate(pr["pairs"], 1):
        w(f"    {i:>4}{p['oursThroughput']:>12.1f}{p['ceilingThroughput']:>12.1f}"
          f"{p['throughputRatio']:>8.3f}{p['oursCpuMs']:>13.3f}{p['ceilingCpuMs']:>13.3f}"
          f"{p['cpuRatio']:>8.3f}")
    w(f"    median throughput ratio {pr['medianThroughputRatio']}, "
      f"median CPU ratio {pr['medianCpuRatio']} (against the ceiling; the targets)")
    if all(p.get("oursGcMs") is not None for p in pr["pairs"]):
        w("    garbage collector CPU per token, ms (part of the CPU above): ours "
          + ", ".join(f"{p['oursGcMs']:.3f}" for p in pr["pairs"]) + "; ceiling "
          + ", ".join(f"{p['ceilingGcMs']:.3f}" for p in pr["pairs"]))
    raw = results.get("pairs64RawCeiling")
    if raw is not None:
        w("    against the raw ceiling (informational, same ours rounds): throughput "
          + ", ".join(f"{p['throughputRatio']:.3f}" for p in raw["pairs"])
          + f" (median {raw['medianThroughputRatio']}); CPU "
          + ", ".join(f"{p['cpuRatio']:.3f}" for p in raw["pairs"])
          + f" (median {raw['medianCpuRatio']})")
    w("")
    cold = results["coldStart"]
    ii, ft = cold["importIndex"], cold["firstToken"]
    w(f"Cold start (median of {cold['runs']} fresh processes each; interpreter start excluded)")
    w(f"  import + index function_app ({ii['app']['functions']} functions)"
      f"{ii['app']['medianMs']:>10.1f} ms   empty FunctionApp {ii['empty']['medianMs']:.1f} ms")
    w(f"  first token (import+index+JWKS+call)        {ft['ours']['medianMs']:>10.1f} ms   "
      f"ceiling (import SDKs+get_entity+get_token) {ft['ceiling']['medianMs']:.1f} ms")
    fw = ft["freshWorker"]
    w(f"  first token in a fresh worker ({' + '.join(fw['preimported'])} imported before the "
      f"clock, as by the Functions worker): ours {fw['ours']['medianMs']:.1f} ms, ceiling "
      f"{fw['ceiling']['medianMs']:.1f} ms = "
      f"{fw['ours']['medianMs'] / fw['ceiling']['medianMs']:.2f} x")
    if "artifact" in fw:  # bench/coldstart.py: the package, with and without app bytecode
        w(f"    {fw['artifact']}; from source (no app bytecode) "
          f"{fw['oursFromSource']['medianMs']:.1f} ms = {fw['ratioFromSource']:.2f} x")
    w(f"    ours: asyncio + azure.functions import "
      f"{ft['ours'].get('azureFunctionsImportMedianMs', '-')} ms, "
      f"+ app import and index = {ft['ours'].get('indexMedianMs', '-')} ms; ceiling: SDK "
      f"imports {ft['ceiling'].get('importMedianMs', '-')} ms")
    stages = ft.get("stages")
    if stages:
        w("  where a fresh process's first token goes (median ms per stage, separate runs):")
        for side in ("ours", "ceiling"):
            parts = ", ".join(f"{name} {ms:.1f}"
                              for name, ms in stages[side]["stagesMedianMs"].items())
            lines = textwrap.wrap(f"{side:<8} {stages[side]['totalMedianMs']:.1f} = {parts}",
                                  width=96, subsequent_indent=" " * 15)
            for line in lines:
                w(f"    {line}")
    w("")
    mem = results["memory"]
    w(f"Memory (ours worker RSS after GC): {mem['rssFirstMb']} MiB after "
      f"{mem['tokensAtFirst']:,} tokens, {mem['rssSecondMb']} MiB after "
      f"{mem['tokensAtSecond']:,} tokens ({mem['growthPct']:+.1f} %)")
    p = results["purge"]
    w(f"Purge: {p['report']['purged']}/{p['users']} identities in {p['seconds']} s = "
      f"{p['deletesPerSecond']}/s; emulator limit {p['deleteLimit']}/{p['windowSeconds']:g} s "
      f"= {p['limitPerSecond']}/s ({p['shareOfLimit'] * 100:.1f} %); 429s: emulator "
      f"{p['emulatorThrottledTotal']}, service {p['report']['throttled']}; failed "
      f"{p['report']['failed']}")
    storm = results.get("storm")
    if storm is not None:
        w(f"Login storm: {storm['users']:,} new users arriving over {storm['arrivalSeconds']:g} s, "
          f"ACS createUserAndToken limit {storm['limit']}/{storm['windowSeconds']:g} s, "
          f"clients wait the Retry-After they get")
        w(f"  every user holds a token after {storm['drainedSeconds']} s; floor "
          f"{storm['floorSeconds']} s (N / limit x window) = {storm['drainedOverFloor']} x")
        w(f"  statuses {storm['statuses']}; client failures {storm['failures'] or 'none'}; "
          f"Retry-After values {storm['retryAfterValues']}")
        for error, count in storm.get("errors", {}).items():
            w(f"  {count:6d} x {error}")
        w(f"  waits asked {storm['waitsRequested']} ({storm['secondsWaited']} s), in vain "
          f"{storm['waitsInVain']} ({storm['secondsWaitedInVain']} s = "
          f"{storm['inVainSecondsPerUser']} s per user); attempts per user median "
          f"{storm['attemptsPerUserMedian']}, max {storm['attemptsPerUserMax']}")
        w(f"  identities created {storm['identitiesCreated']} for {storm['users']} users "
          f"({storm['identitiesPerUser']} per user), distinct mapped {storm['distinctAcsIds']}, "
          f"emulator 429s {storm['emulatorThrottled'].get('createIdentity', 0)}")
    w("")
    w(f"  {'target':<56}{'goal':>18}{'measured':>11}  result  detail")
    for t in results["targets"]:
        measured = "" if t["measured"] is None else f"{t['measured']:.3f}"
        w(f"  {t['target']:<56}{t['goal']:>18}{measured:>11}  "
          f"{'PASS' if t['pass'] else 'FAIL':<6}  {t['detail']}")
    return "\n".join(out)
