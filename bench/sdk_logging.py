"""``python -m bench.sdk_logging [--rounds N] [--reads N]``: what azure-core's HTTP logging
costs per request with logging configured as the Functions worker does, three ways.

One process, one Azurite, one ``TableClient`` (azure.data.tables.aio) doing point reads
at concurrency 64, the root logger at INFO with a forwarding handler
(:class:`bench.load.WorkerLogForwarder`); the three variants take turns round by round:

* ``sdk defaults``: every request's URL and headers logged at INFO and forwarded;
* ``loggers at WARNING``: what the app does (``shared.telemetry.quiet_sdk_loggers``);
* ``policy removed``: ``HttpLoggingPolicy`` unlinked from the client's pipeline (private
  attributes of azure-core's ``AsyncPipeline``: a measurement, not something to ship).

Prints CPU microseconds per read (median of the rounds) and the records forwarded.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import statistics
import sys
from typing import Any

from bench.load import WorkerLogForwarder, closed_loop

VARIANTS = ("sdk defaults", "loggers at WARNING", "policy removed")


def _relink(policies: list[Any], chain: list[Any], transport_runner: Any) -> None:
    policies[:] = chain
    for a, b in itertools.pairwise(chain):
        a.next = b
    chain[-1].next = transport_runner


async def main(rounds: int, reads: int) -> int:
    from azure.core.pipeline.policies import HttpLoggingPolicy
    from azure.data.tables.aio import TableClient

    from localdev.azurite import AzuriteProcess
    from shared.telemetry import SDK_LOGGERS

    forwarder = WorkerLogForwarder()
    with AzuriteProcess() as azurite:
        table = TableClient.from_connection_string(
            azurite.connection_string, "sdklogging", use_env_settings=False)
        await table.create_table()
        for i in range(64):
            await table.create_entity({"PartitionKey": f"u{i}", "RowKey": "user", "A": "x"})
        policies = table._client._client._pipeline._impl_policies
        full = list(policies)
        without = [p for p in full
                   if not isinstance(getattr(p, "_policy", p), HttpLoggingPolicy)]
        transport_runner = full[-1].next
        assert len(without) == len(full) - 1, "HttpLoggingPolicy not found"

        async def read(i: int) -> bool:
            await table.get_entity(f"u{i % 64}", "user")
            return True

        results: dict[str, list[float]] = {v: [] for v in VARIANTS}
        records: dict[str, int] = dict.fromkeys(VARIANTS, 0)
        await closed_loop(read, 640, 64)
        for r in range(rounds):
            for variant in (VARIANTS if r % 2 == 0 else VARIANTS[::-1]):
                level = logging.WARNING if variant == "loggers at WARNING" else logging.NOTSET
                for name in SDK_LOGGERS:
                    logging.getLogger(name).setLevel(level)
                _relink(policies, without if variant == "policy removed" else full,
                        transport_runner)
                sent = forwarder.sent
                m = await closed_loop(read, reads, 64)
                await asyncio.sleep(0.05)  # let the forwarding thread drain
                records[variant] += forwarder.sent - sent
                results[variant].append(m["cpuMsPerRequest"] * 1000)
        for variant in VARIANTS:
            xs = results[variant]
            print(f"{variant:20} {statistics.median(xs):7.1f} µs CPU per Table read "
                  f"(rounds: {', '.join(f'{x:.0f}' for x in xs)}); "
                  f"{records[variant] / (reads * rounds):.1f} log records per read")
        await table.delete_table()
        await table.close()
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.sdk_logging", description=__doc__)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--reads", type=int, default=1472)
    a = p.parse_args()
    sys.exit(asyncio.run(main(a.rounds, a.reads)))
