"""Concurrency against real Azurite and the ACS emulator: one identity per user, always."""

from __future__ import annotations

import asyncio
import random

import pytest

from localdev.chaos import InProcessApp, Workload
from tests.calls import call, request
from tests.reliability.support import ADMIN, invariants, purge, user_rows

pytestmark = pytest.mark.usefixtures("app_env")


async def test_hundred_concurrent_first_requests_make_one_identity(issuer, acs):
    token = issuer.mint("stampede")
    results = await asyncio.gather(*(
        call("issue_token", request("POST", "token", token=token)) for _ in range(100)))
    assert {status for status, _, _ in results} == {200}, [r[1] for r in results if r[0] != 200]
    ids = {body["acsUserId"] for _, body, _ in results}
    assert len(ids) == 1
    stats = acs.stats()
    assert stats["requests"]["createIdentity"] == 1 and stats["identities"] == 1
    tokens = [(body["token"], True) for _, body, _ in results]
    report = await invariants(acs, tokens=tokens)
    assert report.ok, report.summary()
    assert list(user_rows()) == ["stampede"]


async def test_thousand_requests_over_hundred_users_make_hundred_identities(issuer, acs):
    tokens = {f"crowd-{i}": issuer.mint(f"crowd-{i}") for i in range(100)}
    callers = [f"crowd-{i % 100}" for i in range(1000)]
    random.Random(7).shuffle(callers)
    results = await asyncio.gather(*(
        call("issue_token", request("POST", "token", token=tokens[user])) for user in callers))
    assert {status for status, _, _ in results} == {200}, [r[1] for r in results if r[0] != 200]
    by_user: dict[str, set[str]] = {}
    for user, (_, body, _) in zip(callers, results, strict=True):
        by_user.setdefault(user, set()).add(body["acsUserId"])
    assert len(by_user) == 100 and all(len(ids) == 1 for ids in by_user.values())
    assert len({next(iter(ids)) for ids in by_user.values()}) == 100
    stats = acs.stats()
    assert stats["requests"]["createIdentity"] == 100 and stats["identities"] == 100
    report = await invariants(acs)
    assert report.ok, report.summary()
    assert len(report.rows) == 100


async def test_mixed_workload_keeps_the_invariants(issuer, acs):
    """Tokens, self and admin revokes and deletes, restores and purge runs, all at once,
    with DELETION_GRACE_MINUTES=0 so that purges really happen mid-workload."""
    minted: dict[tuple[str, bool], str] = {}

    def mint(user: str, admin: bool) -> str:
        if (user, admin) not in minted:
            minted[(user, admin)] = issuer.mint(user, roles=[ADMIN] if admin else [])
        return minted[(user, admin)]

    workload = Workload(InProcessApp(), mint, [f"mixed-{i}" for i in range(12)],
                        rng=random.Random(20240611), concurrency=24)
    outcome = await workload.run(operations=600)
    assert not outcome.problems, outcome.problems
    for op in ("token:200", "delete:202", "restore:200", "revoke:204", "purge:ok"):
        assert outcome.statuses[op] > 0, (op, outcome.statuses)
    assert acs.stats()["requests"].get("deleteIdentity", 0) > 0  # purges really ran
    # Mid-flight state (deleting rows, stale index entries) must already be consistent.
    mid = await invariants(acs, tokens=outcome.observations())
    assert mid.ok, mid.summary()
    await workload.settle()
    assert not outcome.problems, outcome.problems
    report = await invariants(acs, tokens=outcome.observations())
    assert report.ok, report.summary()
    assert report.tokens_checked >= len(workload.users)
    assert all(row["State"] == "active" for row in user_rows().values())


async def test_a_re_delete_racing_a_purge_skip_keeps_its_index_entry(issuer, acs, monkeypatch):
    import time as clock

    from shared.store import TableIdentityStore

    admin = issuer.mint("root", roles=[ADMIN])

    async def admin_call(name, method, path, user):
        return await call(name, request(method, path, token=admin, route_params={"userId": user}))

    original = TableIdentityStore.delete_purge_entry
    state: dict[str, str] = {}

    async def racing_delete_purge_entry(self, entry):
        if not state.get("raced"):
            state["raced"] = "yes"  # the re-delete lands between the purge's read and delete
            status, body, _ = await admin_call("delete_user", "DELETE", "users/x", entry.user_id)
            assert status == 202
            state["due"] = body["purgeAfter"]
        await original(self, entry)

    for attempt in range(3):  # the three steps must share one wall-clock second
        user = f"racer-{attempt}"
        assert (await call("issue_token", request("POST", "token", token=issuer.mint(user))))[0] == 200
        await asyncio.sleep(1.02 - clock.time() % 1)  # start of a fresh second
        status, first, _ = await admin_call("delete_user", "DELETE", "users/x", user)
        assert status == 202
        assert (await admin_call("restore_user", "POST", "users/x/restore", user))[0] == 200
        state.clear()
        monkeypatch.setattr(TableIdentityStore, "delete_purge_entry", racing_delete_purge_entry)
        await purge()
        monkeypatch.setattr(TableIdentityStore, "delete_purge_entry", original)
        if state.get("due") == first["purgeAfter"]:
            break
    else:
        pytest.skip("could not fit delete, restore and purge into one second")
    assert user_rows()[user]["State"] == "deleting"
    report = await invariants(acs)
    assert not report.of_kind("unindexed_deletion"), report.summary()
    await purge()  # the user is due: the next run must purge it
    assert user not in user_rows()
