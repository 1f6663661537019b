"""The login storm: N new users ask for their first token within a few seconds.

Runs in a bench worker process (``python -m bench.worker``, scenario ``storm``) against an
ACS emulator throttling at the published limits (``--rate-scale 1``: createUserAndToken
1,000 per 30 s per resource, learn.microsoft.com/azure/communication-services/concepts/
service-limits, "Identity"). Every user is a client that calls ``issue_token`` the way the
Functions worker invokes it and, on 429 or 503, waits exactly the ``Retry-After`` the
service answered before trying again (as an app using ``CommunicationTokenCredential``
with a token refresher that honours it would); nothing else paces the clients.

Figures: time until every user holds a token against the floor the limit sets
(N / limit x window), the status histogram of every answer, how long clients waited in
vain (a wait the service asked for that ended in another 429/503), and identities per
user: the emulator's created-identity count against N, and every user's mapping read
back. Failures: any other status, a client timeout, or more identities than users.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from typing import Any

from bench.load import emulator_stats

#: A client gives up on one request after this long (its own HTTP timeout).
CLIENT_TIMEOUT_SECONDS = 30.0
#: A client gives up altogether after this many attempts.
MAX_ATTEMPTS = 50


def _error_of(status: int, body: bytes) -> str:
    """``"503 unavailable: <message>"`` from an error answer's JSON body."""
    try:
        error = json.loads(body)["error"]
        return f"{status} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{status} (no JSON error body)"


async def run_storm(cfg: dict[str, Any]) -> dict[str, Any]:
    from bench.worker import bearer_invoker
    from localdev.host.invocation import in_process
    from shared import runtime

    app = in_process()  # the one in-process invoker (tests, localdev.chaos, the bench)

    def invoker(name: str, method: str, path: str) -> Any:
        return bearer_invoker(app, name, method, path)

    issue = invoker("issue_token", "POST", "token")
    get_me = invoker("get_me", "GET", "me")
    users: list[dict[str, str]] = cfg["users"]
    n = len(users)
    arrival = float(cfg.get("arrivalSeconds", 3.0))

    # The worker is warm (indexed, clients built, JWKS fetched, table created) before the
    # storm, as an instance that already served traffic would be. GET /me of a user
    # without an identity does all that without a createUserAndToken, which would take
    # one of the window's slots from the storm.
    warm = await get_me(cfg["warmupUser"]["token"])
    if warm.status_code != 404:
        raise RuntimeError(f"storm warm-up answered {warm.status_code}")
    before = emulator_stats(cfg)

    statuses: Counter[int] = Counter()
    done_at: list[float] = []
    acs_ids: dict[str, str] = {}
    waits: list[float] = []
    waited_in_vain: list[float] = []
    retry_after_values: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    errors: Counter[str] = Counter()  # "status code: message" of every non-200 answer
    attempts_per_user: list[int] = []
    began = time.monotonic()

    async def client(i: int, user: dict[str, str]) -> None:
        await asyncio.sleep(arrival * i / max(1, n - 1))  # arrivals spread evenly
        last_wait = 0.0
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = await asyncio.wait_for(issue(user["token"]), CLIENT_TIMEOUT_SECONDS)
            except asyncio.TimeoutError:
                failures["client timeout"] += 1
                attempts_per_user.append(attempt)
                return
            status = response.status_code
            statuses[status] += 1
            if status == 200:
                acs_ids[user["userId"]] = json.loads(response.get_body())["acsUserId"]
                done_at.append(time.monotonic() - began)
                attempts_per_user.append(attempt)
                return
            errors[_error_of(status, response.get_body())] += 1
            if last_wait:
                waited_in_vain.append(last_wait)
            raw = response.headers.get("Retry-After")
            if status not in (429, 503) or raw is None:
                failures[f"status {status}"] += 1
                attempts_per_user.append(attempt)
                return
            last_wait = float(int(raw))
            retry_after_values[int(raw)] += 1
            waits.append(last_wait)
            await asyncio.sleep(last_wait)
        failures["gave up"] += 1
        attempts_per_user.append(MAX_ATTEMPTS)

    await asyncio.gather(*(client(i, u) for i, u in enumerate(users)))
    done_at.sort()
    buckets: Counter[int] = Counter(int(t // 5) * 5 for t in done_at)
    drained = max(done_at) if len(done_at) == n else None
    after = emulator_stats(cfg)

    # Identities per user: each user's mapping read back, and the emulator's count.
    mapped: dict[str, str] = {}
    for user in users:
        response = await get_me(user["token"])
        if response.status_code == 200:
            mapped[user["userId"]] = json.loads(response.get_body())["acsUserId"]
    slot_wait = getattr(runtime.built_store(), "longest_slot_wait", None)
    await runtime.reset()

    created = after["identitiesCreated"] - before["identitiesCreated"]
    limit = int(after["limits"]["createIdentity"])
    window = float(after["throttleWindowSeconds"])
    floor = n / limit * window
    mismatched = sum(1 for uid, acs in acs_ids.items() if mapped.get(uid) != acs)
    status_counts = {str(k): v for k, v in sorted(statuses.items())}
    bad_statuses = sum(v for k, v in statuses.items() if k not in (200, 429))
    return {
        "users": n,
        "arrivalSeconds": arrival,
        "limit": limit,
        "windowSeconds": window,
        "floorSeconds": round(floor, 3),
        "drainedSeconds": None if drained is None else round(drained, 3),
        "drainedOverFloor": None if drained is None else round(drained / floor, 4),
        "usersWithToken": len(done_at),
        "tokensByTime": {f"{k}-{k + 5}s": v for k, v in sorted(buckets.items())},
        "statuses": status_counts,
        "failures": dict(failures),
        "longestTableSlotWaitSeconds": None if slot_wait is None else round(slot_wait, 3),
        "errors": dict(errors.most_common()),
        "failedAnswers": bad_statuses,
        "retryAfterValues": {str(k): v for k, v in sorted(retry_after_values.items())},
        "waitsRequested": len(waits),
        "secondsWaited": round(sum(waits), 1),
        "waitsInVain": len(waited_in_vain),
        "secondsWaitedInVain": round(sum(waited_in_vain), 1),
        "inVainSecondsPerUser": round(sum(waited_in_vain) / n, 3),
        "attemptsPerUserMedian": statistics.median(attempts_per_user) if attempts_per_user
        else None,
        "attemptsPerUserMax": max(attempts_per_user, default=None),
        "identitiesCreated": created,
        "identitiesPerUser": round(created / n, 4) if n else None,
        "duplicateIdentities": max(0, created - n),
        "distinctAcsIds": len(set(mapped.values())),
        "usersMapped": len(mapped),
        "tokenMappingMismatches": mismatched,
        "emulatorThrottled": {op: after["throttled"][op] - before["throttled"].get(op, 0)
                              for op in after["throttled"]},
        "emulatorCreateRequests": after["requests"]["createIdentity"]
        - before["requests"]["createIdentity"],
    }
