"""Benchmark the ACS identity emulator's issue-token path over keep-alive TLS.

    .venv/bin/python bench/emulator_bench.py            # ~25 s
    .venv/bin/python bench/emulator_bench.py --quick    # ~3 s
    .venv/bin/python bench/emulator_bench.py --connection-string "endpoint=...;accesskey=..." \
        --ca-file DIR/ca.pem                            # against a running emulator

Starts an emulator (unless given one) with a large --rate-scale so throttling
never interferes, creates one identity, then:

1. latency: one connection, sequential issueAccessToken requests -> p50/p99
   (the emulator's per-request cost including TLS record handling);
2. throughput: client processes (separate from the server) each holding
   several keep-alive TLS connections, one request in flight per connection,
   for a fixed duration -> req/s, p50/p99 under load.

The client signs every request itself with HMAC-SHA256 exactly like the SDKs
(string-to-sign VERB/pathAndQuery/date;host;hash); the signature only depends
on x-ms-date, so it is recomputed once per second.  Requests are written and
responses parsed by hand over asyncio TLS streams to keep the client cheap on a
small machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import email.utils
import hashlib
import hmac
import json
import multiprocessing as mp
import os
import ssl
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: `python bench/emulator_bench.py`
    sys.path.insert(0, str(ROOT))

from localdev.acs_emulator.auth import parse_conn  # noqa: E402

API = "2023-10-01"




class Signer:
    def __init__(self, conn: str, method: str, path: str, body: bytes):
        endpoint, key = parse_conn(conn)
        u = urllib.parse.urlsplit(endpoint)
        self.host = u.netloc
        self.hostname = u.hostname or "127.0.0.1"
        self.port = u.port or 443
        self.key = base64.b64decode(key)
        self.method, self.path, self.body = method, path, body
        self.content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
        self._sec = -1
        self._req = b""

    def request(self) -> bytes:
        sec = int(time.time())
        if sec != self._sec:
            date = email.utils.formatdate(sec, usegmt=True)
            sts = f"{self.method}\n{self.path}\n{date};{self.host};{self.content_hash}"
            sig = base64.b64encode(
                hmac.new(self.key, sts.encode(), hashlib.sha256).digest()
            ).decode()
            head = (
                f"{self.method} {self.path} HTTP/1.1\r\n"
                f"Host: {self.host}\r\n"
                "Content-Type: application/json\r\n"
                "Accept: application/json\r\n"
                f"x-ms-date: {date}\r\n"
                f"x-ms-content-sha256: {self.content_hash}\r\n"
                f"Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256"
                f"&Signature={sig}\r\n"
                f"Content-Length: {len(self.body)}\r\n"
                "\r\n"
            )
            self._req = head.encode() + self.body
            self._sec = sec
        return self._req


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    if length:
        await reader.readexactly(length)
    return status


async def _connection(
    signer: Signer, ctx: ssl.SSLContext, stop_at: float, lat: list[float], errs: list[int]
) -> int:
    reader, writer = await asyncio.open_connection(
        signer.hostname, signer.port, ssl=ctx, server_hostname=signer.hostname
    )
    n = 0
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                break
            writer.write(signer.request())
            status = await _read_response(reader)
            lat.append(time.perf_counter() - t0)
            if status != 200:
                errs.append(status)
            n += 1
    finally:
        writer.close()
    return n


def _worker(conn: str, ca_file: str, ident: str, connections: int, duration: float, q: Any) -> None:
    path = f"/identities/{urllib.parse.quote(ident, safe='')}/:issueAccessToken?api-version={API}"
    body = json.dumps({"scopes": ["chat", "voip"]}).encode()

    async def main() -> tuple[int, list[float], list[int]]:
        ctx = ssl.create_default_context(cafile=ca_file)
        lat: list[float] = []
        errs: list[int] = []
        stop_at = time.perf_counter() + duration
        counts = await asyncio.gather(
            *(
                _connection(Signer(conn, "POST", path, body), ctx, stop_at, lat, errs)
                for _ in range(connections)
            )
        )
        return sum(counts), lat, errs

    n, lat, errs = asyncio.run(main())
    # Ship a bounded sample of latencies back to the parent.
    step = max(1, len(lat) // 20000)
    q.put((n, lat[::step], errs[:100], len(errs)))


def _signed_call(conn: str, ca_file: str, method: str, path: str, body: bytes) -> Any:
    s = Signer(conn, method, path, body)
    endpoint, _ = parse_conn(conn)
    raw = s.request()
    head, _, _ = raw.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode().split("\r\n")[1:]:
        k, _, v = line.partition(": ")
        if k.lower() not in ("host", "content-length"):
            headers[k] = v
    req = urllib.request.Request(endpoint + path, data=body, method=method, headers=headers)
    ctx = ssl.create_default_context(cafile=ca_file)
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        return json.loads(resp.read())


def _cpu_seconds(pid: int) -> float | None:
    """utime+stime of a process (Linux /proc), or None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))]


def run(conn: str, ca_file: str, args: argparse.Namespace) -> dict[str, Any]:
    ident = _signed_call(conn, ca_file, "POST", f"/identities?api-version={API}", b"")["identity"][
        "id"
    ]

    # 1. sequential latency on one connection
    lat_q: Any = mp.get_context("spawn").Queue()
    p = mp.get_context("spawn").Process(
        target=_worker, args=(conn, ca_file, ident, 1, args.latency_seconds, lat_q)
    )
    p.start()
    n1, lat1, _, nerr1 = lat_q.get(timeout=args.latency_seconds + 30)
    p.join()

    # 2. throughput with several processes x connections
    ctx = mp.get_context("spawn")
    q: Any = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(conn, ca_file, ident, args.connections, args.duration, q))
        for _ in range(args.procs)
    ]
    t0 = time.perf_counter()
    for pr in procs:
        pr.start()
    total, lats, nerr = 0, [], 0
    err_sample: list[int] = []
    for _ in procs:
        n, lat, errs, ne = q.get(timeout=args.duration + 60)
        total += n
        lats += lat
        nerr += ne
        err_sample += errs
    for pr in procs:
        pr.join()
    wall = time.perf_counter() - t0
    return {
        "sequential": {
            "requests": n1,
            "errors": nerr1,
            "p50_ms": _pct(lat1, 0.5) * 1000,
            "p99_ms": _pct(lat1, 0.99) * 1000,
            "mean_ms": statistics.fmean(lat1) * 1000 if lat1 else float("nan"),
        },
        "throughput": {
            "processes": args.procs,
            "connections_per_process": args.connections,
            "duration_s": args.duration,
            "requests": total,
            "errors": nerr,
            "error_statuses": sorted(set(err_sample)),
            "req_per_s": total / args.duration,
            "wall_s": wall,
            "p50_ms": _pct(lats, 0.5) * 1000,
            "p99_ms": _pct(lats, 0.99) * 1000,
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny run (~3 s)")
    ap.add_argument("--duration", type=float, default=15.0, help="throughput phase seconds")
    ap.add_argument("--latency-seconds", type=float, default=5.0, help="sequential phase seconds")
    ap.add_argument("--procs", type=int, default=1, help="client processes")
    ap.add_argument("--connections", type=int, default=16, help="connections per client process")
    ap.add_argument("--connection-string", default=None, help="use a running emulator")
    ap.add_argument("--ca-file", default=None, help="its CA (with --connection-string)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.latency_seconds, args.connections = 1.5, 1.0, 4
    args.duration = min(args.duration, 40.0)
    args.latency_seconds = min(args.latency_seconds, 10.0)

    sys.path.insert(0, str(ROOT))
    if args.connection_string:
        if not args.ca_file:
            ap.error("--ca-file is required with --connection-string")
        result = run(args.connection_string, args.ca_file, args)
    else:
        from localdev.acs_emulator import EmulatorProcess

        with (
            tempfile.TemporaryDirectory(prefix="acs-emu-bench-") as d,
            EmulatorProcess(d, rate_scale=100000.0) as emu,
        ):
            cpu0, n0 = _cpu_seconds(emu.pid), emu.stats()["requests"]["issueAccessToken"]
            result = run(emu.connection_string, emu.ca_file, args)
            cpu1, n1 = _cpu_seconds(emu.pid), emu.stats()["requests"]["issueAccessToken"]
            result["server_stats"] = {
                k: v for k, v in emu.stats().items() if k in ("requests", "connections")
            }
            if cpu0 is not None and cpu1 is not None and n1 > n0 and cpu1 > cpu0:
                result["server_cpu_us_per_request"] = (cpu1 - cpu0) / (n1 - n0) * 1e6
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        s, t = result["sequential"], result["throughput"]
        print(
            f"sequential (1 connection): {s['requests']} requests, p50 {s['p50_ms']:.3f} ms, "
            f"p99 {s['p99_ms']:.3f} ms, errors {s['errors']}"
        )
        print(
            f"throughput ({t['processes']} proc x {t['connections_per_process']} conns, "
            f"{t['duration_s']:g} s): {t['req_per_s']:.0f} req/s, p50 {t['p50_ms']:.3f} ms, "
            f"p99 {t['p99_ms']:.3f} ms, errors {t['errors']} {t['error_statuses']}"
        )
        if "server_cpu_us_per_request" in result:
            us = result["server_cpu_us_per_request"]
            print(
                f"server CPU per request: {us:.0f} us "
                f"(one core saturates at ~{1e6 / us:.0f} req/s; load-independent)"
            )
    ok = result["throughput"]["errors"] == 0 and result["sequential"]["errors"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
