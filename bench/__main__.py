"""``python -m bench [--smoke] [--output PATH] [--acs-latency-ms MS] [--profile DIR]``

Starts Azurite, the local issuer and two ACS emulators (one effectively unthrottled for
the throughput runs, one with the delete limit scaled down for the purge run), injects a
fixed ACS latency, then runs every scenario in fresh worker processes (bench/worker.py)
and the cold-start scripts (bench/coldstart.py), prints a table and writes the JSON.
See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import report
from bench.coldstart import (
    ROOT,
    environment,
    first_token,
    first_token_stages,
    import_and_index,
)
from bench.load import pairs, pooled
from bench.worker import PROTOCOL_PREFIX

#: Settings that must not leak from the caller's environment into the workers.
_APP_SETTINGS = (
    "COMMUNICATION_SERVICES_CONNECTION_STRING", "COMMUNICATION_SERVICES_ENDPOINT",
    "IDENTITY_TABLE_CONNECTION", "AzureWebJobsStorage", "IDENTITY_TABLE_SERVICE_URI",
    "AZURE_CLIENT_ID", "IDENTITY_TABLE_NAME", "AUTH_MODE", "AUTH_ISSUER", "AUTH_AUDIENCE",
    "AUTH_JWKS_URI", "AUTH_USER_CLAIM", "AUTH_ADMIN_ROLE", "ALLOWED_SCOPES", "DEFAULT_SCOPES",
    "TOKEN_LIFETIME_MINUTES", "DELETION_GRACE_MINUTES", "PURGE_SCHEDULE", "PURGE_BATCH_SIZE",
    "ACS_DELETE_LIMIT_PER_30S", "ACS_TIMEOUT_SECONDS", "CREATE_LEASE_SECONDS", "EVENT_ACTIONS",
    "PYTHON_THREADPOOL_THREAD_COUNT",
)


#: Which ceiling the targets use (stated in results.json meta and the printed table).
CEILING = ("ceiling (targets): a bare v2 function (bench/ceiling_app.py: raw aio SDKs, "
           "Table get_entity + ACS get_token) invoked through the same in-process invoker "
           "as ours, paying what the Functions worker charges every Python function")
RAW_CEILING = ("rawCeiling (informational, the old measure): the same raw SDK calls in a "
               "bare loop outside any invoker")


@dataclass
class Plan:
    users: int
    memory_tokens: tuple[int, int]
    #: (concurrency, requests per round, warmup per round, rounds); ours and ceiling
    #: take turns round by round
    levels: tuple[tuple[int, int, int, int], ...]
    quickstart_levels: tuple[tuple[int, int, int], ...]  # (concurrency, requests, warmup)
    rt_users: int
    cold_runs: int
    purge_users: int
    purge_rate_scale: float
    main_rate_scale: float = 1000.0
    profile_requests: int = 2000
    #: login storm: new users, the emulator's rate scale and window (None: Azure's 30 s),
    #: and the seconds over which the users arrive
    storm_users: int = 3000
    storm_rate_scale: float = 1.0
    storm_window_seconds: float | None = None
    storm_arrival_seconds: float = 3.0


FULL = Plan(
    users=2000, memory_tokens=(1000, 10000),
    levels=((1, 40, 5, 3), (16, 300, 32, 5), (64, 1000, 128, 5)),
    quickstart_levels=((1, 30, 2), (16, 160, 16), (64, 320, 64)),
    rt_users=3, cold_runs=7, purge_users=120, purge_rate_scale=0.2)

SMOKE = Plan(
    users=20, memory_tokens=(10, 300),
    levels=((1, 3, 1, 2), (16, 16, 16, 2), (64, 64, 64, 2)),
    quickstart_levels=((1, 2, 1), (16, 16, 0), (64, 64, 0)),
    rt_users=2, cold_runs=1, purge_users=5, purge_rate_scale=0.2, profile_requests=200,
    storm_users=30, storm_rate_scale=0.01, storm_window_seconds=2.0,
    storm_arrival_seconds=0.5)


def _versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in ("azure-core", "azure-data-tables", "azure-communication-identity",
                 "azure-functions", "aiohttp", "PyJWT", "cryptography"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _levels(levels: tuple[tuple[int, int, int], ...]) -> list[dict[str, int]]:
    return [{"concurrency": c, "requests": n, "warmup": w} for c, n, w in levels]


class WorkerProcess:
    """A long-lived worker (ours or ceiling) that runs level commands on request."""

    def __init__(self, workdir: Path, scenario: str, cfg: dict[str, Any],
                 env: dict[str, str]) -> None:
        self.scenario = scenario
        self.out_path = workdir / f"{scenario}.result.json"
        self.log_path = workdir / f"{scenario}.log"
        config_path = workdir / f"{scenario}.config.json"
        config_path.write_text(json.dumps({"scenario": scenario, **cfg}))
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in finish()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", str(config_path), str(self.out_path)],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            text=True, bufsize=1)

    def _failure(self) -> RuntimeError:
        self._log.flush()
        tail = self.log_path.read_text(errors="replace")[-4000:]
        return RuntimeError(f"worker {self.scenario} failed ({self.proc.poll()}):\n{tail}")

    def read(self) -> Any:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait(10)
                raise self._failure()
            if line.startswith(PROTOCOL_PREFIX):
                return json.loads(line[len(PROTOCOL_PREFIX):])
            self._log.write(line)  # stray output from a library

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def level(self, concurrency: int, requests: int, warmup: int) -> Any:
        self.send({"cmd": "level", "concurrency": concurrency, "requests": requests,
                   "warmup": warmup})
        return self.read()

    def finish(self) -> Any:
        self.send({"cmd": "finish"})
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        rc = self.proc.wait(900)
        self._log.close()
        if rc != 0:
            raise self._failure()
        return json.loads(self.out_path.read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


class Bench:
    def __init__(self, args: argparse.Namespace, plan: Plan, workdir: Path) -> None:
        self.args = args
        self.plan = plan
        self.workdir = workdir

    def run_worker(self, scenario: str, cfg: dict[str, Any], env: dict[str, str]) -> Any:
        cfg = {"scenario": scenario, **cfg}
        config_path = self.workdir / f"{scenario}.config.json"
        out_path = self.workdir / f"{scenario}.result.json"
        log_path = self.workdir / f"{scenario}.log"
        config_path.write_text(json.dumps(cfg))
        log(f"worker {scenario} ...")
        began = time.perf_counter()
        with open(log_path, "wb") as err:
            proc = subprocess.run(
                [sys.executable, "-m", "bench.worker", str(config_path), str(out_path)],
                cwd=ROOT, env=env, stdout=err, stderr=subprocess.STDOUT, timeout=900,
                check=False)
        if proc.returncode != 0:
            tail = log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"worker {scenario} failed ({proc.returncode}):\n{tail}")
        log(f"worker {scenario} done in {time.perf_counter() - began:.1f} s")
        return json.loads(out_path.read_text())

    def ours_and_ceiling(self, common: dict[str, Any], ours_cfg: dict[str, Any],
                         env: dict[str, str]) -> tuple[Any, Any, dict[str, Any]]:
        """The three workers stay up (ours, the fair ceiling the targets use, and the raw
        SDK loop kept beside it); each level is run in rounds, the workers taking turns
        (ours, ceiling, raw, then raw, ceiling, ours: ours and the ceiling always back to
        back), and the rounds are pooled per scenario. The raw ceiling's result is under
        ``ceiling_result["raw"]``."""
        plan = self.plan
        log("worker ours: setup (round trips, first tokens) ...")
        ours = WorkerProcess(self.workdir, "ours", {**common, **ours_cfg}, env)
        workers: list[WorkerProcess] = [ours]
        try:
            ours.read()
            ceiling_cfg = {**common, "users": ours_cfg["users"], "profile": ours_cfg["profile"]}
            log("worker ceiling (bare function through the invoker): setup ...")
            ceiling = WorkerProcess(self.workdir, "ceiling", ceiling_cfg, env)
            workers.append(ceiling)
            ceiling.read()
            log("worker rawCeiling (raw SDK loop, informational): setup ...")
            raw = WorkerProcess(self.workdir, "rawCeiling", ceiling_cfg, env)
            workers.append(raw)
            raw.read()
            rounds: dict[str, dict[str, list[Any]]] = {"ours": {}, "ceiling": {},
                                                       "rawCeiling": {}}
            for c, n, warm, n_rounds in plan.levels:
                log(f"concurrency {c}: {n_rounds} rounds of {n} requests each, "
                    "ours, ceiling and raw ceiling taking turns")
                for r in range(n_rounds):
                    turn = (("ours", ours), ("ceiling", ceiling), ("rawCeiling", raw))
                    for name, worker in (turn if r % 2 == 0 else turn[::-1]):
                        rounds[name].setdefault(str(c), []).append(worker.level(c, n, warm))
            log("worker ours: memory top-up, profile ...")
            ours_result = ours.finish()
            ceiling_result = ceiling.finish()
            ceiling_result["raw"] = raw.finish()
        except BaseException:
            for worker in workers:
                worker.kill()
            raise
        levels = {name: {c: pooled(rs) for c, rs in by_level.items()}
                  for name, by_level in rounds.items()}
        return ours_result, ceiling_result, levels

    def storm(self, issuer: Any, azurite: Any, env: dict[str, str], run_id: str) -> Any:
        """The login storm, against an emulator of its own that throttles at the published
        limits (so no other scenario has used up its window)."""
        from localdev import tls
        from localdev.acs_emulator import EmulatorProcess

        plan = self.plan
        storm_dir = self.workdir / "acs-storm"
        storm_dir.mkdir(parents=True, exist_ok=True)
        for name in (tls.CA_CERT_NAME, tls.CA_KEY_NAME):
            shutil.copy2(self.workdir / "acs" / name, storm_dir / name)
        extra = ([] if plan.storm_window_seconds is None
                 else ["--throttle-window", repr(plan.storm_window_seconds)])
        log(f"login storm: minting {plan.storm_users} new users")
        users = [{"userId": uid, "token": issuer.mint(sub=uid, minutes=60)}
                 for uid in (f"bench-{run_id}-storm-{i:05d}" for i in range(plan.storm_users))]
        warmup = {"userId": f"bench-{run_id}-storm-warmup",
                  "token": issuer.mint(sub=f"bench-{run_id}-storm-warmup", minutes=60)}
        with EmulatorProcess(storm_dir, rate_scale=plan.storm_rate_scale,
                             extra_args=extra) as acs_storm:
            acs_storm.set_faults(latency_ms=self.args.acs_latency_ms)
            storm_env = {**env,
                         "COMMUNICATION_SERVICES_CONNECTION_STRING":
                             acs_storm.connection_string,
                         "IDENTITY_TABLE_NAME": f"benchstorm{run_id}"}
            return self.run_worker("storm", {
                "users": users, "warmupUser": warmup,
                "arrivalSeconds": plan.storm_arrival_seconds,
                "emulatorEndpoint": acs_storm.endpoint,
                "emulatorCaFile": str(self.workdir / "acs" / tls.CA_CERT_NAME),
                "workerLogging": not self.args.python_logging}, storm_env)

    def run(self) -> dict[str, Any]:
        from localdev import tls
        from localdev.acs_emulator import EmulatorProcess
        from localdev.azurite import AzuriteProcess
        from localdev.issuer import IssuerServer
        from shared.keys import user_key

        plan, args = self.plan, self.args
        started = time.perf_counter()
        load_before = os.getloadavg()
        acs_dir, purge_dir = self.workdir / "acs", self.workdir / "acs-purge"
        tls.ensure_ca(acs_dir)  # one CA for both emulators: one SSL_CERT_FILE
        purge_dir.mkdir(parents=True, exist_ok=True)
        for name in (tls.CA_CERT_NAME, tls.CA_KEY_NAME):
            shutil.copy2(acs_dir / name, purge_dir / name)
        ca_file = str(acs_dir / tls.CA_CERT_NAME)

        log("starting Azurite, issuer and ACS emulators")
        with (AzuriteProcess() as azurite,
              IssuerServer(self.workdir / "issuer") as issuer,
              EmulatorProcess(acs_dir, rate_scale=plan.main_rate_scale) as acs,
              EmulatorProcess(purge_dir, rate_scale=plan.purge_rate_scale) as acs_purge):
            acs.set_faults(latency_ms=args.acs_latency_ms)
            acs_purge.set_faults(latency_ms=args.acs_latency_ms)
            delete_limit = int(acs_purge.stats()["limits"]["deleteIdentity"])

            log("minting caller tokens")
            mint_minutes = 240

            def user(uid: str) -> dict[str, str]:
                return {"userId": uid, "token": issuer.mint(sub=uid, minutes=mint_minutes),
                        "partitionKey": user_key(uid)}

            run_id = uuid.uuid4().hex[:8]
            users = [user(f"bench-{run_id}-user-{i:05d}") for i in range(plan.users)]
            rt_users = [user(f"bench-{run_id}-rt-{i}") for i in range(plan.rt_users)]
            warmup_user = user(f"bench-{run_id}-warmup")
            purge_users = [user(f"bench-{run_id}-purge-{i:04d}")
                           for i in range(plan.purge_users)]
            table, purge_table = f"bench{run_id}", f"benchpurge{run_id}"

            base = {name: "" for name in _APP_SETTINGS}
            base.update({
                "SSL_CERT_FILE": ca_file, "REQUESTS_CA_BUNDLE": ca_file,
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                "COMMUNICATION_SERVICES_CONNECTION_STRING": acs.connection_string,
                "IDENTITY_TABLE_CONNECTION": azurite.connection_string,
                "IDENTITY_TABLE_NAME": table,
                "AUTH_ISSUER": issuer.issuer, "AUTH_AUDIENCE": issuer.audience,
                "DELETION_GRACE_MINUTES": "0", "PURGE_SCHEDULE": "0 */5 * * * *",
            })
            env = environment(base)
            env = {k: v for k, v in env.items() if v != "" or k not in _APP_SETTINGS}
            common = {"tableConnection": azurite.connection_string, "tableName": table,
                      "acsConnectionString": acs.connection_string,
                      "rtUsers": rt_users, "profileRequests": plan.profile_requests,
                      "workerLogging": not args.python_logging}
            profile_dir = str(Path(args.profile).resolve()) if args.profile else None

            ours, ceiling, levels = self.ours_and_ceiling(common, {
                "users": users, "warmupUser": warmup_user,
                "memoryTokens": list(plan.memory_tokens), "profile": profile_dir}, env)
            quickstart = self.run_worker("quickstart", {
                **common, "levels": _levels(plan.quickstart_levels)}, env)

            log(f"cold start: {plan.cold_runs} fresh processes per figure")
            import_index = import_and_index(env, plan.cold_runs)
            cold_users = users[-plan.cold_runs:] if plan.cold_runs <= len(users) else users
            first = first_token(env, cold_users, plan.cold_runs)
            first["stages"] = first_token_stages(env, cold_users, plan.cold_runs)

            purge_env = {**env,
                         "COMMUNICATION_SERVICES_CONNECTION_STRING": acs_purge.connection_string,
                         "IDENTITY_TABLE_NAME": purge_table,
                         "ACS_DELETE_LIMIT_PER_30S": str(delete_limit)}
            purge = self.run_worker("purge", {
                "users": purge_users, "emulatorEndpoint": acs_purge.endpoint,
                "emulatorCaFile": ca_file}, purge_env)
            emulator_stats = {"main": acs.stats(), "purge": acs_purge.stats()}
            storm = self.storm(issuer, azurite, env, run_id) if plan.storm_users else None
            issuer_stats = issuer.stats()

        results: dict[str, Any] = {
            "meta": {
                "mode": "smoke" if args.smoke else "full",
                "command": " ".join([Path(sys.executable).name, "-m", "bench", *sys.argv[1:]]),
                "acsLatencyMs": args.acs_latency_ms,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "packages": _versions(),
                "plan": asdict(plan),
                "interleaving": "ours, ceiling and raw ceiling take turns round by round "
                                "(ours-ceiling-raw, then raw-ceiling-ours); throughput = "
                                "median round, latency/CPU pooled; targets: medians of the "
                                "per-pair ratios at concurrency 64",
                "ceiling": CEILING,
                "rawCeiling": RAW_CEILING,
                "logging": "Python defaults (WARNING, no handler)" if args.python_logging
                else "as the Functions worker: root logger INFO, every record formatted "
                     "and queued to a forwarding thread",
                "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "durationSeconds": round(time.perf_counter() - started, 1),
                "loadAverageBefore": [round(x, 2) for x in load_before],
                "loadAverageAfter": [round(x, 2) for x in os.getloadavg()],
                "quickstartThreads": quickstart["threads"],
                "emulatorMainRateScale": plan.main_rate_scale,
                "emulatorPurgeRateScale": plan.purge_rate_scale,
            },
            "roundTrips": {"ours": ours["roundTrips"], "ceiling": ceiling["roundTrips"],
                           "rawCeiling": ceiling["raw"]["roundTrips"],
                           "quickstart": quickstart["roundTrips"]},
            "throughput": {"ours": levels["ours"], "ceiling": levels["ceiling"],
                           "rawCeiling": levels["rawCeiling"],
                           "quickstart": quickstart["levels"],
                           "oursFirstToken": {"64": ours["firstToken"].get(
                               "b", ours["firstToken"]["a"])},
                           "oursFirstTokenSegments": ours["firstToken"]},
            "pairs64": pairs(levels["ours"]["64"]["rounds"], levels["ceiling"]["64"]["rounds"]),
            "pairs64RawCeiling": pairs(levels["ours"]["64"]["rounds"],
                                       levels["rawCeiling"]["64"]["rounds"]),
            "cpuPerToken": {"ours": levels["ours"]["64"]["cpuMsPerRequest"],
                            "ceiling": levels["ceiling"]["64"]["cpuMsPerRequest"],
                            "rawCeiling": levels["rawCeiling"]["64"]["cpuMsPerRequest"],
                            "quickstart": quickstart["cpuMsPerToken"], "unit": "ms",
                            "concurrency": 64},
            "coldStart": {"runs": plan.cold_runs, "importIndex": import_index,
                          "firstToken": first},
            "memory": ours["memory"],
            "ceilingMemory": ceiling["memory"],
            "rawCeilingMemory": ceiling["raw"]["memory"],
            "purge": purge,
            "storm": storm,
            "workers": {name: {"processSeconds": r["processSeconds"],
                               "processCpuSeconds": r["processCpuSeconds"]}
                        for name, r in (("ours", ours), ("ceiling", ceiling),
                                        ("rawCeiling", ceiling["raw"]),
                                        ("quickstart", quickstart), ("purge", purge))},
            "emulatorStats": emulator_stats,
            "issuerStats": issuer_stats,
        }
        # The throughput table is indexed by concurrency as a string: JSON keys.
        results["throughput"]["oursFirstToken"] = {
            "64": results["throughput"]["oursFirstToken"]["64"]}
        if profile_dir:
            results["profiles"] = {"directory": profile_dir}
            for name in ("ours", "ceiling", "rawCeiling"):
                path = Path(profile_dir) / f"{name}.components.json"
                if path.exists():
                    results["profiles"][name] = json.loads(path.read_text())
        results["meta"]["durationSeconds"] = round(time.perf_counter() - started, 1)
        results["targets"] = report.targets(results)
        return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="every scenario with tiny counts")
    p.add_argument("--output", default=str(ROOT / "bench" / "results.json"),
                   help="where to write the JSON results (default bench/results.json)")
    p.add_argument("--acs-latency-ms", type=float, default=50.0,
                   help="latency the ACS emulator adds to every ACS call (default 50)")
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="also profile ours and ceiling at concurrency 64 (pyinstrument and "
                        "cProfile) after the measured runs; reports go to DIR")
    p.add_argument("--python-logging", action="store_true",
                   help="leave logging at Python's defaults (WARNING, no handler) in the "
                        "workers instead of configuring it as the Functions worker does "
                        "(root logger at INFO, every record formatted and forwarded)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = p.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    workdir = Path(tempfile.mkdtemp(prefix="acs-bench-"))
    try:
        results = Bench(args, plan, workdir).run()
    except BaseException:
        log(f"failed; work directory kept: {workdir}")
        raise
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(report.table(results))
    print(f"\nresults: {output}")
    if args.keep:
        log(f"work directory: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
