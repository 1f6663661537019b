"""Cold-start figures, each from fresh ``python -c`` processes (so nothing is cached).

Every script starts its clock at its first statement, so interpreter start-up (the same
for both sides of a comparison) is left out; the orchestrator also records each
process's whole wall time. App settings and SSL_CERT_FILE come from the environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

INDEX_APP = """
import json, sys, time
t0 = time.perf_counter()
import function_app
functions = function_app.app.get_functions()
t1 = time.perf_counter()
print(json.dumps({"seconds": t1 - t0, "functions": len(functions), "modules": len(sys.modules)}))
"""

INDEX_EMPTY = """
import json, sys, time
t0 = time.perf_counter()
import azure.functions as func
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
functions = app.get_functions()
t1 = time.perf_counter()
print(json.dumps({"seconds": t1 - t0, "functions": len(functions), "modules": len(sys.modules)}))
"""

FIRST_TOKEN_OURS = """
import json, os, sys, time
t0 = time.perf_counter()
import asyncio
import azure.functions as func
t_func = time.perf_counter()
import function_app
functions = {f.get_function_name(): f.get_user_function()
             for f in function_app.app.get_functions()}
t_index = time.perf_counter()

class Context:
    invocation_id = "cold-start"
    function_name = "issue_token"
    function_directory = "."

async def main():
    req = func.HttpRequest("POST", "http://localhost/api/token", headers={
        "authorization": "Bearer " + os.environ["BENCH_TOKEN"],
        "content-type": "application/json"}, params={}, route_params={}, body=b"")
    fn = functions["issue_token"]
    import inspect
    if "context" in inspect.signature(fn).parameters:
        response = await fn(req, context=Context())
    else:
        response = await fn(req)
    t1 = time.perf_counter()
    from shared import runtime
    await runtime.reset()
    return response.status_code, t1

status, t1 = asyncio.run(main())
print(json.dumps({"seconds": t1 - t0, "indexSeconds": t_index - t0, "status": status,
                  "azureFunctionsImportSeconds": t_func - t0, "modules": len(sys.modules)}))
"""

#: What a fresh Functions worker has imported before it loads any app: it runs on an
#: asyncio event loop (azure_functions_worker/main.py, dispatcher.py) and imports
#: azure.functions to index a v2 app (loader.py; on Linux Consumption already at
#: worker_init_request, dispatcher.py ``DependencyManager.is_in_linux_consumption``).
WORKER_PREIMPORTS = "import asyncio\nimport azure.functions\n"
_CLOCK = "import json, os, sys, time\nt0 = time.perf_counter()\n"


def in_fresh_worker(script: str) -> str:
    """``script`` with the worker's own imports done before its clock starts."""
    assert script.startswith("\n" + _CLOCK), script[:80]
    return "\nimport json, os, sys, time\n" + WORKER_PREIMPORTS + "t0 = time.perf_counter()\n" \
        + script[len("\n" + _CLOCK):]

FIRST_TOKEN_CEILING = """
import json, os, sys, time
t0 = time.perf_counter()
import asyncio
from datetime import timedelta
from azure.communication.identity import CommunicationUserIdentifier
from azure.communication.identity.aio import CommunicationIdentityClient
from azure.data.tables.aio import TableClient
t_import = time.perf_counter()

async def main():
    table = TableClient.from_connection_string(os.environ["IDENTITY_TABLE_CONNECTION"],
                                               os.environ["IDENTITY_TABLE_NAME"],
                                               use_env_settings=False)
    identity = CommunicationIdentityClient.from_connection_string(
        os.environ["COMMUNICATION_SERVICES_CONNECTION_STRING"], use_env_settings=False)
    entity = await table.get_entity(os.environ["BENCH_PARTITION_KEY"], "user")
    token = await identity.get_token(CommunicationUserIdentifier(entity["AcsUserId"]),
                                     ["chat", "voip"], token_expires_in=timedelta(minutes=1440))
    t1 = time.perf_counter()
    await table.close()
    await identity.close()
    return (200 if token.token else 500), t1

status, t1 = asyncio.run(main())
print(json.dumps({"seconds": t1 - t0, "indexSeconds": t_import - t0, "status": status,
                  "modules": len(sys.modules)}))
"""

FIRST_TOKEN_OURS_WORKER = in_fresh_worker(FIRST_TOKEN_OURS)
FIRST_TOKEN_CEILING_WORKER = in_fresh_worker(FIRST_TOKEN_CEILING)


#: Where a fresh process's first token goes, stage by stage (a separate set of processes:
#: importing modules one by one changes nothing in total but is not the measured figure).
STAGES_OURS = """
import json, os, sys, time
T = [("start", time.perf_counter())]
def mark(name):
    T.append((name, time.perf_counter()))
import asyncio; mark("import asyncio")
import azure.functions as func; mark("import azure.functions")
import function_app
functions = {f.get_function_name(): f.get_user_function()
             for f in function_app.app.get_functions()}; mark("import function_app + index")
import shared.jws; mark("import the JWT verifier (cryptography)")
import aiohttp; mark("import aiohttp")
import azure.data.tables.aio; mark("import azure.data.tables")
import azure.communication.identity.aio; mark("import azure.communication.identity")
import shared.acs, shared.auth, shared.service, shared.store; mark("import shared modules")
from shared import auth, runtime
_refresh = auth.JwksCache._refresh
async def _timed_refresh(self, seen):
    mark("first call: until JWKS fetch")
    await _refresh(self, seen)
    mark("JWKS fetch (discovery + keys)")
auth.JwksCache._refresh = _timed_refresh

class Context:
    invocation_id = "cold-start"
    function_name = "issue_token"
    function_directory = "."

async def main():
    await runtime.get_service(); mark("settings + SDK clients")
    req = func.HttpRequest("POST", "http://localhost/api/token", headers={
        "authorization": "Bearer " + os.environ["BENCH_TOKEN"],
        "content-type": "application/json"}, params={}, route_params={}, body=b"")
    response = await functions["issue_token"](req, context=Context())
    mark("verify + Table read + ACS call")
    assert response.status_code == 200, response.get_body()
    await runtime.reset()

asyncio.run(main())
print(json.dumps({"stages": [[b[0], (b[1] - a[1]) * 1000] for a, b in zip(T, T[1:])],
                  "seconds": T[-1][1] - T[0][1]}))
"""

#: The ceiling's stages import azure.functions too, as a worker does before any app, and
#: as STAGES_OURS does: it shares modules with aiohttp (typing, json, email, http, ...),
#: so without it the ceiling's aiohttp stage would also carry their import (~20 ms).
STAGES_CEILING = """
import json, os, sys, time
T = [("start", time.perf_counter())]
def mark(name):
    T.append((name, time.perf_counter()))
import asyncio; mark("import asyncio")
import azure.functions; mark("import azure.functions")
import aiohttp; mark("import aiohttp")
from azure.data.tables.aio import TableClient; mark("import azure.data.tables")
from azure.communication.identity import CommunicationUserIdentifier
from azure.communication.identity.aio import CommunicationIdentityClient
mark("import azure.communication.identity")
from datetime import timedelta

async def main():
    table = TableClient.from_connection_string(os.environ["IDENTITY_TABLE_CONNECTION"],
                                               os.environ["IDENTITY_TABLE_NAME"],
                                               use_env_settings=False)
    identity = CommunicationIdentityClient.from_connection_string(
        os.environ["COMMUNICATION_SERVICES_CONNECTION_STRING"], use_env_settings=False)
    mark("SDK clients")
    entity = await table.get_entity(os.environ["BENCH_PARTITION_KEY"], "user")
    mark("Table read (get_entity)")
    await identity.get_token(CommunicationUserIdentifier(entity["AcsUserId"]),
                             ["chat", "voip"], token_expires_in=timedelta(minutes=1440))
    mark("ACS call (get_token)")
    await table.close()
    await identity.close()

asyncio.run(main())
print(json.dumps({"stages": [[b[0], (b[1] - a[1]) * 1000] for a, b in zip(T, T[1:])],
                  "seconds": T[-1][1] - T[0][1]}))
"""


def run_script(script: str, env: dict[str, str], *, importtime: bool = False,
               timeout: float = 120.0, cwd: Path = ROOT) -> dict[str, Any]:
    cmd = [sys.executable]
    if importtime:
        cmd += ["-X", "importtime"]
    cmd += ["-c", script]
    began = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"cold-start script failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1])
    result["processWallSeconds"] = wall
    if importtime:
        result["importtime"] = _top_imports(proc.stderr)
    return result


def _top_imports(stderr: str, top: int = 12) -> list[dict[str, Any]]:
    """The heaviest top-level imports from ``-X importtime`` (cumulative microseconds)."""
    rows: list[dict[str, Any]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header line
        name = parts[2][1:]
        if name != name.lstrip():
            continue  # nested: counted in its top-level importer's cumulative time
        rows.append({"module": name, "selfUs": int(parts[0]), "cumulativeUs": int(parts[1])})
    rows.sort(key=lambda r: r["cumulativeUs"], reverse=True)
    return rows[:top]


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ms = [r["seconds"] * 1000 for r in runs]
    return {
        "medianMs": round(statistics.median(ms), 2),
        "minMs": round(min(ms), 2),
        "runsMs": [round(x, 2) for x in ms],
        "processWallMedianMs": round(
            statistics.median(r["processWallSeconds"] * 1000 for r in runs), 2),
        "modules": runs[-1].get("modules"),
    }


def import_and_index(env: dict[str, str], runs: int) -> dict[str, Any]:
    app: list[dict[str, Any]] = []
    empty: list[dict[str, Any]] = []
    for _ in range(runs):  # interleaved, so that drift affects both sides alike
        app.append(run_script(INDEX_APP, env))
        empty.append(run_script(INDEX_EMPTY, env))
    traced = run_script(INDEX_APP, env, importtime=True)
    return {"app": {**summarize(app), "functions": app[-1]["functions"],
                    "importtimeTop": traced["importtime"]},
            "empty": summarize(empty)}


def app_bytecode() -> list[str]:
    """The app's own bytecode files for this interpreter in this checkout, if any (left by
    a run that wrote bytecode): the figures that run from the checkout (import + index, the
    bare-process first token, the stages) import them instead of compiling the app from
    source (~18 ms). The fresh-worker figure runs the package itself (:func:`packages`)."""
    tag = sys.implementation.cache_tag
    return sorted(str(p.relative_to(ROOT)) for d in (ROOT, ROOT / "shared")
                  for p in (d / "__pycache__").glob(f"*.{tag}*.pyc"))


def _warn_on_app_bytecode() -> None:
    found = app_bytecode()
    if found:
        print(f"[bench] warning: {len(found)} bytecode files of the app in this checkout "
              f"({found[0]}, ...): the figures run from the checkout import them; delete "
              "them for figures of the app compiled from source", file=sys.stderr, flush=True)


#: What the fresh-worker figure measures (``coldStart.firstToken.freshWorker.artifact``).
AS_DEPLOYED = "as deployed: app bytecode shipped (checked-hash)"


@contextlib.contextmanager
def packages() -> Iterator[dict[str, Path]]:
    """The deployment package of this checkout, twice, read-only as a run-from-package
    mount is: ``deployed`` as ``azd deploy`` builds it (its prepackage hook,
    ``localdev.bytecode``, compiles the app for this interpreter, checked-hash; .funcignore
    keeps those pycs), and ``fromSource`` without the app's bytecode (what a deployment
    from a machine without the Function App's Python gets: the pycs of another version
    are ignored)."""
    import tempfile

    from localdev import bytecode, package

    scratch = Path(tempfile.mkdtemp(prefix="acs-coldstart-package-"))
    trees = {"deployed": scratch / "deployed", "fromSource": scratch / "fromSource"}
    try:
        for tree in trees.values():
            package.build(tree, ROOT)
            for stale in (*tree.glob("__pycache__/*.pyc"), *tree.glob("shared/**/*.pyc")):
                stale.unlink()  # a local run's bytecode: not what the deploy ships
        bytecode.compile_app(trees["deployed"])
        for tree in trees.values():
            package.make_read_only(tree)
        yield trees
    finally:
        package.remove(scratch)


def first_token(env: dict[str, str], users: list[dict[str, str]], runs: int) -> dict[str, Any]:
    """Fresh-process first tokens. The fresh-worker figure runs the package as deployed
    (:func:`packages`: cwd and import path on a read-only copy of what .funcignore keeps,
    with the app's bytecode) and, beside it, the same package without that bytecode."""
    _warn_on_app_bytecode()
    ours: list[dict[str, Any]] = []
    ceiling: list[dict[str, Any]] = []
    ours_worker: list[dict[str, Any]] = []
    ours_worker_source: list[dict[str, Any]] = []
    ceiling_worker: list[dict[str, Any]] = []
    with packages() as trees:
        for i in range(runs):  # interleaved, so that drift affects every side alike
            user = users[i % len(users)]
            sides = [(trees["deployed"], ours_worker), (trees["fromSource"], ours_worker_source)]
            for tree, runs_of in (sides if i % 2 == 0 else sides[::-1]):
                result = run_script(FIRST_TOKEN_OURS_WORKER, {
                    **_tree_env(env, tree), "BENCH_TOKEN": user["token"]}, cwd=tree)
                if result["status"] != 200:
                    raise RuntimeError(f"cold first token answered {result['status']}")
                runs_of.append(result)
            result = run_script(FIRST_TOKEN_OURS, {**env, "BENCH_TOKEN": user["token"]})
            if result["status"] != 200:
                raise RuntimeError(f"cold first token answered {result['status']}")
            ours.append(result)
            for script, runs_of in ((FIRST_TOKEN_CEILING_WORKER, ceiling_worker),
                                    (FIRST_TOKEN_CEILING, ceiling)):
                runs_of.append(run_script(
                    script, {**env, "BENCH_PARTITION_KEY": user["partitionKey"]}))
    user = users[0]
    traced_ours = run_script(FIRST_TOKEN_OURS, {**env, "BENCH_TOKEN": user["token"]},
                             importtime=True)
    traced_ceiling = run_script(FIRST_TOKEN_CEILING,
                                {**env, "BENCH_PARTITION_KEY": user["partitionKey"]},
                                importtime=True)
    return {"ours": {**summarize(ours),
                     "azureFunctionsImportMedianMs": round(statistics.median(
                         r["azureFunctionsImportSeconds"] * 1000 for r in ours), 2),
                     "indexMedianMs": round(
                         statistics.median(r["indexSeconds"] * 1000 for r in ours), 2),
                     "importtimeTop": traced_ours["importtime"]},
            "freshWorker": _fresh_worker(ours_worker, ours_worker_source, ceiling_worker),
            "ceiling": {**summarize(ceiling), "importMedianMs": round(
                statistics.median(r["indexSeconds"] * 1000 for r in ceiling), 2),
                "importtimeTop": traced_ceiling["importtime"]}}


def _fresh_worker(deployed: list[dict[str, Any]], from_source: list[dict[str, Any]],
                  ceiling: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "preimported": ["asyncio", "azure.functions"], "artifact": AS_DEPLOYED,
        "ours": summarize(deployed), "oursFromSource": summarize(from_source),
        "ceiling": summarize(ceiling),
        "bytecodeFor": f"Python {sys.version_info.major}.{sys.version_info.minor}"}
    out["ratio"] = round(out["ours"]["medianMs"] / out["ceiling"]["medianMs"], 3)
    out["ratioFromSource"] = round(
        out["oursFromSource"]["medianMs"] / out["ceiling"]["medianMs"], 3)
    return out


def first_token_stages(env: dict[str, str], users: list[dict[str, str]],
                       runs: int) -> dict[str, Any]:
    """Median milliseconds per stage of a fresh process's first token, ours and ceiling."""
    samples: dict[str, list[dict[str, Any]]] = {"ours": [], "ceiling": []}
    for i in range(runs):
        user = users[i % len(users)]
        samples["ours"].append(run_script(STAGES_OURS, {**env, "BENCH_TOKEN": user["token"]}))
        samples["ceiling"].append(run_script(
            STAGES_CEILING, {**env, "BENCH_PARTITION_KEY": user["partitionKey"]}))
    out: dict[str, Any] = {}
    for side, runs_of in samples.items():
        names = [name for name, _ in runs_of[0]["stages"]]
        out[side] = {
            "stagesMedianMs": {name: round(statistics.median(
                dict(r["stages"])[name] for r in runs_of), 2) for name in names},
            "totalMedianMs": round(statistics.median(r["seconds"] * 1000 for r in runs_of), 2),
        }
    return out


def environment(base: dict[str, str]) -> dict[str, str]:
    """The environment of every bench process. No bytecode is written: a deployed package
    holds none of the app's (.funcignore drops ``__pycache__``) and is read-only, so a
    fresh worker compiles function_app.py and shared/ from source, and so must the
    cold-start scripts (see :func:`app_bytecode`)."""
    env = dict(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _stage_lines(stages: dict[str, Any]) -> list[str]:
    lines = []
    for side in ("ours", "ceiling"):
        lines.append(f"  {side}: {stages[side]['totalMedianMs']:.1f} ms")
        lines += [f"    {name:<40}{ms:>8.1f}"
                  for name, ms in stages[side]["stagesMedianMs"].items()]
    return lines


@contextlib.contextmanager
def stack(users: int, acs_latency_ms: float) -> Iterator[tuple[dict[str, str],
                                                                  list[dict[str, str]]]]:
    """Azurite, the issuer and an ACS emulator as ``make bench`` runs them, and the
    environment of a fresh process against them; ``users`` callers already mapped (so that
    the measured first token of a process is a repeat token: one Table read, one ACS call)."""
    import shutil
    import tempfile
    import uuid

    from bench.__main__ import _APP_SETTINGS, log
    from localdev import tls
    from localdev.acs_emulator import EmulatorProcess
    from localdev.azurite import AzuriteProcess
    from localdev.issuer import IssuerServer
    from shared.keys import user_key

    workdir = Path(tempfile.mkdtemp(prefix="acs-coldstart-"))
    try:
        acs_dir = workdir / "acs"
        tls.ensure_ca(acs_dir)
        ca_file = str(acs_dir / tls.CA_CERT_NAME)
        log("starting Azurite, issuer and ACS emulator")
        with (AzuriteProcess() as azurite, IssuerServer(workdir / "issuer") as issuer,
              EmulatorProcess(acs_dir, rate_scale=1000.0) as acs):
            acs.set_faults(latency_ms=acs_latency_ms)
            run_id = uuid.uuid4().hex[:8]
            callers = [{"userId": uid, "token": issuer.mint(sub=uid, minutes=60),
                        "partitionKey": user_key(uid)}
                       for uid in (f"cold-{run_id}-{i:03d}" for i in range(users))]
            base = {name: "" for name in _APP_SETTINGS}  # as bench/__main__.py sets them
            base.update({
                "SSL_CERT_FILE": ca_file, "REQUESTS_CA_BUNDLE": ca_file,
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                "COMMUNICATION_SERVICES_CONNECTION_STRING": acs.connection_string,
                "IDENTITY_TABLE_CONNECTION": azurite.connection_string,
                "IDENTITY_TABLE_NAME": f"cold{run_id}",
                "AUTH_ISSUER": issuer.issuer, "AUTH_AUDIENCE": issuer.audience,
                "DELETION_GRACE_MINUTES": "0", "PURGE_SCHEDULE": "0 */5 * * * *",
            })
            env = {k: v for k, v in environment(base).items()
                   if v != "" or k not in _APP_SETTINGS}
            log(f"creating {len(callers)} users (their first token: a repeat from now on)")
            for user in callers:
                if run_script(FIRST_TOKEN_OURS, {**env, "BENCH_TOKEN": user["token"]}
                              )["status"] != 200:
                    raise RuntimeError("setup: first token failed")
            yield env, callers
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


#: What a deployment package holds of the app's code (.funcignore keeps these).
APP_FILES = ("function_app.py", "shared")


def _tree_env(env: dict[str, str], tree: Path) -> dict[str, str]:
    """``env`` with ``tree`` instead of this checkout on the import path."""
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
            if p and Path(p).resolve() != ROOT]
    return {**env, "PYTHONPATH": os.pathsep.join([str(tree), *rest])}


def compare_trees(env: dict[str, str], users: list[dict[str, str]], runs: int, *,
                  baseline: str | None = None, bytecode: bool = False) -> str:
    """Fresh-worker first tokens of this tree, of ``baseline`` (a ``git archive`` of that
    ref), of this tree shipped with bytecode (``localdev.bytecode``: checked-hash, which
    stays valid whatever the package does to file times) and of the ceiling, one of each
    in turn (so that drift affects all of them alike)."""
    import shutil
    import tempfile

    from localdev import bytecode as bytecode_tool

    scratch = Path(tempfile.mkdtemp(prefix="acs-coldstart-trees-"))
    trees: list[tuple[str, Path]] = [("this tree", ROOT)]
    try:
        if baseline is not None:
            base = scratch / "baseline"
            base.mkdir()
            archive = subprocess.run(["git", "archive", baseline, *APP_FILES], cwd=ROOT,
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
            trees.append((baseline, base))
        if bytecode:
            compiled = scratch / "bytecode"
            compiled.mkdir()
            shutil.copy2(ROOT / "function_app.py", compiled)
            shutil.copytree(ROOT / "shared", compiled / "shared",
                            ignore=shutil.ignore_patterns("__pycache__"))
            bytecode_tool.compile_app(compiled)  # what the prepackage hook does
            trees.append(("with bytecode", compiled))
        ms: dict[str, list[float]] = {name: [] for name, _ in trees}
        ms["ceiling"] = []
        for i in range(runs):
            user = users[i % len(users)]
            for name, tree in (trees if i % 2 == 0 else trees[::-1]):
                result = run_script(FIRST_TOKEN_OURS_WORKER, {
                    **_tree_env(env, tree), "BENCH_TOKEN": user["token"]}, cwd=tree)
                if result["status"] != 200:
                    raise RuntimeError(f"{name}: cold first token answered {result['status']}")
                ms[name].append(result["seconds"] * 1000)
            ms["ceiling"].append(run_script(FIRST_TOKEN_CEILING_WORKER, {
                **env, "BENCH_PARTITION_KEY": user["partitionKey"]})["seconds"] * 1000)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ceiling = statistics.median(ms["ceiling"])
    lines = [f"first token in a fresh worker, median of {runs} (load average "
             f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}):"]
    for name, values in ms.items():
        median = statistics.median(values)
        lines.append(f"  {name:<14}{median:>8.1f} ms  {median / ceiling:5.2f} x   runs "
                     f"{[round(x, 1) for x in values]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.coldstart [--runs N] [--baseline REF] [--bytecode] [--script F]``: the
    cold-start figures of ``make bench`` alone (the same scripts and components), in
    under a minute. Timing runs on a shared machine: run one at a time."""
    import argparse

    from bench.__main__ import log

    p = argparse.ArgumentParser(
        prog="python -m bench.coldstart",
        description="The cold-start figures of `make bench` alone, against Azurite, the local "
                    "issuer and the ACS emulator started as `make bench` starts them.")
    p.add_argument("--runs", type=int, default=7, help="fresh processes per figure (7)")
    p.add_argument("--acs-latency-ms", type=float, default=50.0,
                   help="latency the ACS emulator adds to every ACS call (default 50)")
    p.add_argument("--no-stages", action="store_true", help="skip the stage profile")
    p.add_argument("--baseline", metavar="GIT_REF",
                   help="instead of the figures, compare this tree's first token in a fresh "
                        "worker with GIT_REF's (and the ceiling's), alternating processes")
    p.add_argument("--bytecode", action="store_true",
                   help="instead of the figures, compare this tree's first token in a fresh "
                        "worker with the same app shipped with its bytecode")
    p.add_argument("--script", metavar="FILE",
                   help="instead of the figures, run FILE --runs times in fresh processes "
                        "against the same components (BENCH_TOKEN and BENCH_PARTITION_KEY "
                        "name a mapped caller) and print its output: for profiling")
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    with stack(args.runs, args.acs_latency_ms) as (env, users):
        if args.script:
            code = Path(args.script).read_text()
            for user in users:
                proc = subprocess.run(
                    [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                    env={**env, "BENCH_TOKEN": user["token"],
                         "BENCH_PARTITION_KEY": user["partitionKey"]}, timeout=120,
                    check=False)
                print(proc.stdout + proc.stderr, end="", flush=True)
            return 0
        if args.baseline or args.bytecode:
            print(compare_trees(env, users, args.runs, baseline=args.baseline,
                                bytecode=args.bytecode))
            return 0
        log(f"{args.runs} fresh processes per figure")
        index = import_and_index(env, args.runs)
        first = first_token(env, users, args.runs)
        stages = None if args.no_stages else first_token_stages(env, users, args.runs)
    fw = first["freshWorker"]
    ratio = fw["ours"]["medianMs"] / fw["ceiling"]["medianMs"]
    out = [
        f"cold start, median of {args.runs} fresh processes each (ACS latency "
        f"{args.acs_latency_ms:g} ms; load average {' '.join(f'{x:.2f}' for x in load_before)}"
        f" before, {' '.join(f'{x:.2f}' for x in os.getloadavg())} after)",
        f"  import + index: app {index['app']['medianMs']:.1f} ms, empty FunctionApp "
        f"{index['empty']['medianMs']:.1f} ms (extra "
        f"{index['app']['medianMs'] - index['empty']['medianMs']:.1f} ms)",
        f"  first token in a fresh worker ({' + '.join(fw['preimported'])} imported first): "
        f"ours {fw['ours']['medianMs']:.1f} ms, ceiling {fw['ceiling']['medianMs']:.1f} ms = "
        f"{ratio:.2f} x (target <= 1.15), {fw['artifact']}",
        f"    from source (the package without the app's bytecode): ours "
        f"{fw['oursFromSource']['medianMs']:.1f} ms = {fw['ratioFromSource']:.2f} x",
        f"    runs: ours {fw['ours']['runsMs']}, from source {fw['oursFromSource']['runsMs']}, "
        f"ceiling {fw['ceiling']['runsMs']}",
        f"  first token in a bare process: ours {first['ours']['medianMs']:.1f} ms, ceiling "
        f"{first['ceiling']['medianMs']:.1f} ms",
    ]
    if stages is not None:
        out.append("  stages (median ms, separate processes):")
        out += _stage_lines(stages)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
