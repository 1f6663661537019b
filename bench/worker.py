"""One benchmark worker process: ``python -m bench.worker CONFIG.json OUT.json``.

``ours`` and ``ceiling`` do their setup, say ``ready`` on stdout (lines prefixed with
:data:`PROTOCOL_PREFIX`), then run the orchestrator's level commands from stdin until it
sends ``finish``, so that the two can take turns; ``quickstart`` and ``purge`` run to
completion. Every worker writes its result to OUT.json.

Each scenario runs in a fresh process of its own, so that its CPU time and RSS are its
own: Azurite, the ACS emulator and the issuer are other processes, and the orchestrator
(``python -m bench``) only waits. The environment (app settings, SSL_CERT_FILE for the
emulator's CA) is set by the orchestrator before this process starts, i.e. before
aiohttp is imported.

Scenarios:

* ``ours``: function_app's ``issue_token`` (and revoke/delete/purge for the round-trip
  figures) called in-process as the Functions worker calls an async function: one event
  loop, a ``func.HttpRequest`` per invocation, the app indexed once.
* ``ceiling`` (the one the targets use): a bare v2 function (bench/ceiling_app.py) doing
  the unavoidable work of a repeat token with the raw aio SDKs (one Table point read, one
  ACS issue call), called through the same in-process invoker as ours, so that it pays
  what the Functions worker charges any Python function (log records, Context, the
  HttpRequest built and the HttpResponse converted back) and nothing of ours.
* ``rawCeiling`` (informational, the old measure): the same two raw SDK calls in a bare
  loop, outside any invoker.
* ``quickstart``: the ACS quickstart pattern (a sync handler that builds a new
  CommunicationIdentityClient per request and calls create_user + get_token), run the
  way the worker runs sync functions: in a thread pool of the worker's default size.
* ``purge``: ours' purge against an emulator whose delete limit is scaled down.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.load import WorkerLogForwarder, closed_loop, cpu_seconds, emulator_stats, rss_mb
from bench.storm import run_storm

SCOPES = ["chat", "voip"]


_INVOCATIONS = itertools.count()
_RUN = uuid.uuid4().hex[:8]


def host_invocation_id() -> str:
    """The id the host sends with each invocation request; numbered here, because a
    uuid4 made by the load generator would charge the host's work to the function."""
    return f"{_RUN}-{next(_INVOCATIONS):08d}"


def bearer_invoker(app: Any, name: str, method: str, path: str) -> Any:
    """``invoke(token)``: one HTTP function called through the one in-process invoker
    (``localdev.host.invocation``, as tests and localdev.chaos call it), as the host would."""
    from localdev.host.invocation import http_request

    async def invoke(token: str) -> Any:
        return await app.run(name, http_request(method, path, token=token),
                             invocation_id=host_invocation_id())
    return invoke


def _delta(after: dict[str, int], before: dict[str, int] | None = None) -> dict[str, int]:
    before = before or {}
    return {k: v - before.get(k, 0) for k, v in after.items()}


def _same_counts(samples: list[dict[str, int]]) -> dict[str, Any]:
    """Per-operation counts: the mean over samples, and whether every sample agreed."""
    keys = ("tableReads", "tableWrites", "acs")
    mean = {k: sum(s[k] for s in samples) / len(samples) for k in keys}
    exact = all(s == samples[0] for s in samples)
    out: dict[str, Any] = {k: (int(v) if float(v).is_integer() else round(v, 3))
                           for k, v in mean.items()}
    out["samples"] = len(samples)
    out["deterministic"] = exact
    return out


def _write(path: Path, text: str | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if text is not None:
        path.write_text(text)


async def _profile(cfg: dict[str, Any], name: str, op: Any, start: int) -> int:
    """Profile a c=64 run (after the measured runs, so it perturbs none of them):
    pyinstrument's sampled call tree and cProfile's per-function self time."""
    import cProfile
    import io
    import pstats

    from pyinstrument import Profiler

    out = Path(cfg["profile"])
    n = int(cfg.get("profileRequests", 2000))
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    await closed_loop(op, n, 64, start=start)
    profiler.stop()
    _write(out / f"{name}.pyinstrument.txt",
           profiler.output_text(unicode=False, color=False, show_all=False))
    start += n
    prof = cProfile.Profile()
    prof.enable()
    await closed_loop(op, n, 64, start=start)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    _write(out / f"{name}.prof", None)
    stats.dump_stats(str(out / f"{name}.prof"))
    stats.sort_stats("tottime").print_stats(45)
    stats.sort_stats("cumulative").print_stats(60)
    _write(out / f"{name}.cprofile.txt", buf.getvalue())
    _write(out / f"{name}.components.json", json.dumps(components(stats, n), indent=2))
    return start + n


#: Where self time goes, by the file a function lives in (first match wins).
_COMPONENTS = (
    ("/shared/", "app: shared/"),
    ("function_app.py", "app: function_app.py"),
    ("/bench/ceiling_app.py", "ceiling app (bench/ceiling_app.py)"),
    ("/bench/", "load generator (bench/)"),
    ("/localdev/host/", "invoker (localdev/host)"),
    ("/azure/functions/", "azure.functions (HttpRequest/HttpResponse)"),
    ("/azure/core/", "azure-core pipeline"),
    ("/azure/data/tables/", "azure-data-tables"),
    ("/azure/communication/", "azure-communication-identity"),
    ("/jwt/", "PyJWT"),
    ("/cryptography/", "cryptography"),
    ("/aiohttp/", "aiohttp"),
    ("/yarl/", "aiohttp (yarl/multidict)"),
    ("/multidict/", "aiohttp (yarl/multidict)"),
    ("/asyncio/", "asyncio event loop"),
    ("selectors.py", "asyncio event loop"),
    ("/concurrent/futures/", "thread-pool hops"),
    ("threading.py", "thread-pool hops"),
    ("/logging/", "logging"),
    ("/json/", "json"),
    ("/urllib/", "urllib.parse"),
    ("_strptime.py", "datetime.strptime"),
    ("uuid.py", "uuid"),
    ("/typing.py", "typing isinstance checks"),
)


def components(stats: Any, requests: int) -> dict[str, Any]:
    """Self time per component, in microseconds per request (builtins are charged by name:
    socket/ssl/select calls to I/O, the rest to 'builtins')."""
    totals: dict[str, float] = {}
    for (filename, _, func_name), (_, _, tottime, _, _) in stats.stats.items():
        group = "other"
        if filename == "~":
            lowered = func_name.lower()
            if any(word in lowered for word in ("socket", "ssl", "epoll", "select")):
                group = "socket/TLS I/O (syscalls)"
            elif "queue" in lowered or "lock" in lowered or "thread" in lowered:
                group = "thread-pool hops"
            elif "uuid" in lowered:
                group = "uuid"
            else:
                group = "builtins"
        else:
            for needle, name in _COMPONENTS:
                if needle in filename:
                    group = name
                    break
        totals[group] = totals.get(group, 0.0) + tottime
    per_request = {k: round(v / requests * 1e6, 1)
                   for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}
    return {"requests": requests, "usPerRequest": per_request,
            "totalUsPerRequest": round(sum(totals.values()) / requests * 1e6, 1)}


PROTOCOL_PREFIX = "@@BENCH "


def reply(obj: Any) -> None:
    """One protocol line to the orchestrator (stdout is the channel; logs go to stderr)."""
    sys.stdout.write(PROTOCOL_PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


async def serve_levels(op: Any, start: int) -> int:
    """Run the orchestrator's level commands until it says ``finish``, so that the ours
    and ceiling workers can take turns (their rounds interleave, and background load
    on the machine falls on both alike). Returns the next request index."""
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            raise RuntimeError("the orchestrator went away")
        cmd = json.loads(line)
        if cmd["cmd"] == "finish":
            return start
        c, n, warm = int(cmd["concurrency"]), int(cmd["requests"]), int(cmd["warmup"])
        if warm:
            await closed_loop(op, warm, c, start=start)
            start += warm
        reply(await closed_loop(op, n, c, start=start, keep_latencies=True))
        start += n


async def _levels(cfg: dict[str, Any], op: Any, start: int) -> tuple[dict[str, Any], int]:
    results: dict[str, Any] = {}
    for level in cfg["levels"]:
        c, n, warm = int(level["concurrency"]), int(level["requests"]), int(level["warmup"])
        if warm:
            await closed_loop(op, warm, c, start=start)
            start += warm
        results[str(c)] = await closed_loop(op, n, c, start=start)
        start += n
    return results, start


# -- ours ------------------------------------------------------------------------------------

async def run_ours(cfg: dict[str, Any]) -> dict[str, Any]:


    from localdev.host.invocation import in_process
    from shared import runtime
    from shared.telemetry import round_trips

    app = in_process()  # the one in-process invoker (tests and localdev.chaos use it too)

    def invoker(name: str, method: str, path: str) -> Any:
        return bearer_invoker(app, name, method, path)

    issue = invoker("issue_token", "POST", "token")
    revoke = invoker("revoke_me", "POST", "me/revoke")
    delete = invoker("delete_me", "DELETE", "me")

    async def expect(call: Any, token: str, status: int) -> None:
        response = await call(token)
        if response.status_code != status:
            raise RuntimeError(f"expected {status}, got {response.status_code}: "
                               f"{response.get_body()[:300]!r}")

    # The first call creates the table (a one-off, not a per-request cost).
    await expect(issue, cfg["warmupUser"]["token"], 200)
    service = await runtime.get_service()

    # 1. Round trips, counted by the SDKs' raw_request_hook; one operation at a time.
    samples: dict[str, list[dict[str, int]]] = {
        k: [] for k in ("firstToken", "repeatToken", "revoke", "delete")}
    for user in cfg["rtUsers"]:
        for key, call, status in (("firstToken", issue, 200), ("repeatToken", issue, 200),
                                  ("revoke", revoke, 204)):
            round_trips.reset()
            await expect(call, user["token"], status)
            samples[key].append(round_trips.snapshot())
    round_trips.reset()
    empty_report = await service.purge()  # nothing due yet: the per-run overhead
    empty_run = round_trips.snapshot()
    for user in cfg["rtUsers"]:
        round_trips.reset()
        await expect(delete, user["token"], 202)
        samples["delete"].append(round_trips.snapshot())
    round_trips.reset()
    report = await service.purge()
    purge_run = round_trips.snapshot()
    k = len(cfg["rtUsers"])
    if report.purged != k:
        raise RuntimeError(f"round-trip purge purged {report.purged} of {k}: {report.as_dict()}")
    rt: dict[str, Any] = {key: _same_counts(v) for key, v in samples.items()}
    per_user = {key: (purge_run[key] - empty_run[key]) / k for key in purge_run}
    rt["purgePerUser"] = {key: int(v) if float(v).is_integer() else round(v, 3)
                          for key, v in per_user.items()}
    rt["purgePerUser"]["users"] = k
    rt["purgePerRun"] = {**empty_run, "emptyRunReport": empty_report.as_dict()}
    rt["purgeRun"] = {**purge_run, "report": report.as_dict()}

    # 2. Load: distinct users, each reusing its own bearer token.
    users = [u["token"] for u in cfg["users"]]
    n_users = len(users)
    first_ok = {"count": 0}

    async def first_op(i: int) -> bool:
        response = await issue(users[i])
        ok = bool(response.status_code == 200)
        first_ok["count"] += ok
        return ok

    async def repeat_op(i: int) -> bool:
        response = await issue(users[i % n_users])
        return bool(response.status_code == 200)

    mem_first, mem_second = (int(x) for x in cfg["memoryTokens"])
    memory: dict[str, Any] = {"rssStartMb": round(rss_mb(), 2)}
    first: dict[str, Any] = {}
    split = min(mem_first, n_users)
    first["a"] = await closed_loop(first_op, split, 64, start=0)
    issued = split
    memory["rssFirstMb"], memory["tokensAtFirst"] = round(rss_mb(), 2), issued
    if n_users > split:
        first["b"] = await closed_loop(first_op, n_users - split, 64, start=split)
        issued = n_users
    if first_ok["count"] != n_users:
        raise RuntimeError(f"only {first_ok['count']} of {n_users} first tokens succeeded")
    reply({"ready": True, "tokensIssued": issued})
    issued = await serve_levels(repeat_op, issued)
    if mem_second > issued:
        await closed_loop(repeat_op, mem_second - issued, 64, start=issued)
        issued = mem_second
    memory["rssSecondMb"], memory["tokensAtSecond"] = round(rss_mb(), 2), issued
    memory["growthPct"] = round(
        (memory["rssSecondMb"] - memory["rssFirstMb"]) / memory["rssFirstMb"] * 100, 2)

    if cfg.get("profile"):
        issued = await _profile(cfg, "ours", repeat_op, issued)
    await runtime.reset()
    return {"roundTrips": rt, "firstToken": first, "memory": memory, "tokensIssued": issued}


# -- ceiling: a bare function through the invoker (what the targets use) ---------------------

async def run_ceiling(cfg: dict[str, Any]) -> dict[str, Any]:
    """bench/ceiling_app.py's ``issue_token``, indexed and invoked through
    ``localdev.host.invocation.InProcessFunctions`` exactly as ours is (``bearer_invoker``):
    a new ``func.HttpRequest`` per call, the host's invocation id numbered here."""
    from bench import ceiling_app
    from localdev.host.invocation import InProcessFunctions, http_request

    app = InProcessFunctions(ceiling_app, Path(ceiling_app.__file__).parent)
    keys = [u["partitionKey"] for u in cfg["users"]]
    n_users = len(keys)

    async def op(i: int) -> bool:
        response = await app.run(
            "issue_token", http_request("POST", "token", headers={"x-user-key": keys[i % n_users]}),
            invocation_id=host_invocation_id())
        return bool(response.status_code == 200)

    return await _serve_ceiling(cfg, "ceiling", op)


# -- raw ceiling: the raw SDKs in a bare loop (informational) --------------------------------

async def run_raw_ceiling(cfg: dict[str, Any]) -> dict[str, Any]:
    """The same two SDK calls with the same clients (``ceiling_app.clients``), outside any
    invoker: no request, no response, no invocation records."""
    from bench import ceiling_app

    table, identity, user = ceiling_app.clients()
    keys = [u["partitionKey"] for u in cfg["users"]]
    n_users = len(keys)

    async def op(i: int) -> bool:
        entity = await table.get_entity(keys[i % n_users], "user")
        token = await identity.get_token(user(entity["AcsUserId"]), ceiling_app.SCOPES,
                                         token_expires_in=ceiling_app.TOKEN_LIFETIME)
        return bool(token.token)

    return await _serve_ceiling(cfg, "rawCeiling", op)


async def _serve_ceiling(cfg: dict[str, Any], name: str, op: Any) -> dict[str, Any]:
    """A ceiling worker's life: connections opened once (as in any warm worker), its round
    trips counted, then the orchestrator's levels, the profile if asked, the clients closed."""
    from bench import ceiling_app
    from shared.telemetry import round_trips

    await op(0)
    samples = []
    for i in range(len(cfg["rtUsers"])):
        round_trips.reset()
        if not await op(i):
            raise RuntimeError(f"{name} request failed")
        samples.append(round_trips.snapshot())
    memory = {"rssStartMb": round(rss_mb(), 2)}
    reply({"ready": True})
    issued = await serve_levels(op, 0)
    memory["rssEndMb"] = round(rss_mb(), 2)
    if cfg.get("profile"):
        await _profile(cfg, name, op, issued)
    await ceiling_app.close()
    return {"roundTrips": {"repeatToken": _same_counts(samples)}, "memory": memory,
            "requestsServed": issued}


# -- quickstart ------------------------------------------------------------------------------

async def run_quickstart(cfg: dict[str, Any]) -> dict[str, Any]:
    import os
    from concurrent.futures import ThreadPoolExecutor

    import azure.functions as func
    from azure.communication.identity import CommunicationIdentityClient

    from shared.telemetry import round_trips

    connection_string = cfg["acsConnectionString"]

    def quickstart(req: func.HttpRequest) -> func.HttpResponse:
        """The quickstart's sync HTTP function: a new client per request, create_user, then
        get_token (no caller authentication and no mapping: the quickstart has neither)."""
        client = CommunicationIdentityClient.from_connection_string(
            connection_string, raw_request_hook=round_trips.acs_hook)
        user = client.create_user()
        token = client.get_token(user, SCOPES)
        return func.HttpResponse(json.dumps({
            "acsUserId": user.properties["id"], "token": token.token,
            "expiresOn": str(token.expires_on)}), mimetype="application/json")

    # The Python worker runs sync functions in a ThreadPoolExecutor whose size is
    # PYTHON_THREADPOOL_THREAD_COUNT; unset on Python 3.9+ that is the executor default,
    # min(32, cpu_count + 4).
    threads = int(cfg.get("threads") or min(32, (os.cpu_count() or 1) + 4))
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=threads))

    async def op(i: int) -> bool:
        req = func.HttpRequest("POST", "http://localhost/api/token", headers={
            "content-type": "application/json"}, params={}, route_params={}, body=b"")
        response = await asyncio.to_thread(quickstart, req)
        return bool(response.status_code == 200)

    await op(0)
    samples = []
    for i in range(len(cfg["rtUsers"])):
        round_trips.reset()
        if not await op(i):
            raise RuntimeError("quickstart request failed")
        samples.append(round_trips.snapshot())
    levels, _ = await _levels(cfg, op, 0)
    return {"roundTrips": {"firstToken": _same_counts(samples)}, "levels": levels,
            "cpuMsPerToken": levels["64"]["cpuMsPerRequest"] if "64" in levels else None,
            "threads": threads}


# -- purge -----------------------------------------------------------------------------------

async def run_purge(cfg: dict[str, Any]) -> dict[str, Any]:
    """Users are created through issue_token, then marked as deleted (grace period over)
    directly in the table: deleting them through delete_me would also revoke, and the
    revoke limit is scaled down with the delete limit. Then one purge run is timed."""
    from dataclasses import replace
    from datetime import datetime, timedelta, timezone

    from localdev.host.invocation import http_request, in_process
    from shared import runtime
    from shared.config import get_settings
    from shared.models import PurgeEntry, UserState
    from shared.store import TableIdentityStore

    async def first_op(i: int) -> bool:
        req = http_request("POST", "token", token=cfg["users"][i]["token"])
        response = await in_process().run("issue_token", req)
        return bool(response.status_code == 200)

    n = len(cfg["users"])
    created = await closed_loop(first_op, n, 8)
    if created["failures"]:
        raise RuntimeError(f"purge setup: {created['failures']} of {n} first tokens failed")
    settings = get_settings()
    assert settings.table_connection is not None
    store = TableIdentityStore.from_connection_string(settings.table_connection,
                                                      settings.table_name)
    due = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=1)
    for user in cfg["users"]:
        record = await store.get_user(user["userId"])
        assert record is not None
        await store.put_purge_entry(PurgeEntry(user["userId"], due))
        await store.replace_user(replace(record, state=UserState.DELETING, purge_at=due))
    await store.close()

    service = await runtime.get_service()
    before = emulator_stats(cfg)
    began = time.perf_counter()
    report = await service.purge()
    elapsed = time.perf_counter() - began
    after = emulator_stats(cfg)
    await runtime.reset()
    limit = int(after["limits"]["deleteIdentity"])
    window = float(after["throttleWindowSeconds"])
    rate = report.purged / elapsed if elapsed > 0 else 0.0
    return {
        "users": n,
        "report": report.as_dict(),
        "seconds": round(elapsed, 3),
        "deletesPerSecond": round(rate, 3),
        "deleteLimit": limit,
        "windowSeconds": window,
        "limitPerSecond": round(limit / window, 3),
        "shareOfLimit": round(rate / (limit / window), 4),
        "serviceDeleteLimitSetting": settings.acs_delete_limit_per_30s,
        "emulatorDeleteRequests": after["requests"]["deleteIdentity"]
        - before["requests"]["deleteIdentity"],
        "emulatorIdentitiesDeleted": after["identitiesDeleted"] - before["identitiesDeleted"],
        "emulatorThrottled": _delta(after["throttled"], before["throttled"]),
        "emulatorThrottledTotal": sum(after["throttled"].values()),
    }


SCENARIOS = {"ours": run_ours, "ceiling": run_ceiling, "rawCeiling": run_raw_ceiling,
             "quickstart": run_quickstart,
             "purge": run_purge, "storm": run_storm}


def main(argv: list[str]) -> int:
    config_path, out_path = Path(argv[0]), Path(argv[1])
    cfg = json.loads(config_path.read_text())
    forwarder = WorkerLogForwarder() if cfg.get("workerLogging") else None
    began, cpu0 = time.perf_counter(), cpu_seconds()
    result = asyncio.run(SCENARIOS[cfg["scenario"]](cfg))
    result["processSeconds"] = round(time.perf_counter() - began, 3)
    result["processCpuSeconds"] = round(cpu_seconds() - cpu0, 3)
    result["logRecordsForwarded"] = None if forwarder is None else forwarder.sent
    out_path.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
