"""Service rules over in-memory ports: identity uniqueness, crash recovery, lifecycle."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from shared.config import load_settings
from shared.errors import Conflict, Forbidden, NotFound, Unavailable, UserDeleted
from shared.models import Caller, EventAction, Scope, TokenRequest, UserEvent, UserState
from shared.service import TokenService
from tests.fakes import Crash, CrashAt, FakeAcs, FakeScheduler, ManualClock, MemoryStore

BASE_ENV = {
    "COMMUNICATION_SERVICES_CONNECTION_STRING": "endpoint=https://x/;accesskey=eA==",
    "IDENTITY_TABLE_CONNECTION": "UseDevelopmentStorage=true",
    "AUTH_ISSUER": "https://issuer.example",
    "AUTH_AUDIENCE": "api://x",
    "ALLOWED_SCOPES": "chat,voip,chat.join",
}


def make(grace: int = 60, checkpoint=None, scheduler=None, **env: str):
    settings = load_settings({**BASE_ENV, "DELETION_GRACE_MINUTES": str(grace), **env})
    store, acs, clock = MemoryStore(), FakeAcs(), ManualClock()
    kwargs = {"checkpoint": checkpoint} if checkpoint else {}
    service = TokenService(store, acs, settings, scheduler=scheduler or FakeScheduler(),
                           clock=clock, **kwargs)
    return service, store, acs, clock


def invariants(store: MemoryStore, acs: FakeAcs) -> None:
    """Every live identity has exactly one row; every active row points to a live one."""
    recorded = [r.acs_user_id for r in store.users.values()]
    assert len(recorded) == len(set(recorded))
    assert acs.live <= set(recorded), f"leaked identities: {acs.live - set(recorded)}"
    for record in store.users.values():
        if record.state is UserState.ACTIVE:
            assert record.acs_user_id in acs.live


alice = Caller("alice")


async def test_first_token_creates_identity_then_repeat_costs_one_read_one_call():
    service, store, acs, _ = make()
    first = await service.issue_token(alice, TokenRequest())
    assert first.acs_user_id in acs.live and first.scopes == (Scope.CHAT, Scope.VOIP)
    assert acs.calls == {"create": 1}
    assert (store.reads, store.writes) == (1, 2)  # read, claim insert, mapping insert
    store.reads = store.writes = 0
    again = await service.issue_token(alice, TokenRequest((Scope.CHAT,), 60))
    assert again.acs_user_id == first.acs_user_id and again.scopes == (Scope.CHAT,)
    assert (store.reads, store.writes, acs.calls.get("issue")) == (1, 0, 1)


async def test_scopes_outside_allowed_are_forbidden():
    service, *_ = make()
    with pytest.raises(Forbidden):
        await service.issue_token(alice, TokenRequest((Scope.VOIP_JOIN,)))


async def test_concurrent_first_requests_make_one_identity():
    service, store, acs, _ = make()
    results = await asyncio.gather(*(service.issue_token(alice, TokenRequest()) for _ in range(100)))
    assert len({r.acs_user_id for r in results}) == 1
    assert acs.calls["create"] == 1 and len(acs.live) == 1
    invariants(store, acs)


async def test_many_users_concurrently_one_identity_each():
    service, store, acs, _ = make()
    callers = [Caller(f"user-{i % 100}") for i in range(1000)]
    results = await asyncio.gather(*(service.issue_token(c, TokenRequest()) for c in callers))
    by_user: dict[str, set[str]] = {}
    for caller, result in zip(callers, results, strict=True):
        by_user.setdefault(caller.user_id, set()).add(result.acs_user_id)
    assert all(len(ids) == 1 for ids in by_user.values()) and len(by_user) == 100
    assert len(acs.live) == 100
    invariants(store, acs)


@pytest.mark.parametrize("step", ["first_token.claimed", "first_token.created"])
async def test_crash_during_first_token_recovers_after_lease(step):
    service, store, acs, clock = make(checkpoint=CrashAt(step))
    with pytest.raises(Crash):
        await service.issue_token(alice, TokenRequest())
    leaked = set(acs.live)  # a crash after creation leaks what was never recorded
    clock.advance(seconds=61)
    issued = await service.issue_token(alice, TokenRequest())
    assert store.users["alice"].acs_user_id == issued.acs_user_id
    assert acs.live - leaked == {issued.acs_user_id}
    assert (await service.purge()).stale_claims_cleared == 0  # the new lease is still live
    clock.advance(seconds=61)
    report = await service.purge()
    assert report.stale_claims_cleared == 1 and not store.claims


async def test_request_waits_for_a_live_claim_instead_of_creating():
    service, store, acs, clock = make()
    from shared.models import Claim

    await store.insert_claim(Claim("alice", clock.now() + timedelta(seconds=60)))

    async def finish_creation_later():
        await asyncio.sleep(0.05)
        acs_id, _ = await acs.create_user_and_token([Scope.CHAT], 60)
        from shared.models import UserRecord
        await store.insert_user(UserRecord("alice", acs_id, UserState.ACTIVE, clock.now()))

    issued, _ = await asyncio.gather(service.issue_token(alice, TokenRequest()),
                                     finish_creation_later())
    assert acs.calls["create"] == 1 and issued.acs_user_id in acs.live


async def test_slow_creator_that_lost_its_lease_discards_its_identity():
    service, store, acs, clock = make()
    gate = asyncio.Event()
    original = acs.create_user_and_token

    async def slow_create(scopes, minutes):
        result = await original(scopes, minutes)
        await gate.wait()
        return result

    acs.create_user_and_token = slow_create  # type: ignore[method-assign]
    slow = asyncio.create_task(service.issue_token(alice, TokenRequest()))
    await asyncio.sleep(0.01)
    clock.advance(seconds=61)  # the slow creator's lease lapses
    acs.create_user_and_token = original  # type: ignore[method-assign]
    fast = await service.issue_token(alice, TokenRequest())
    gate.set()
    late = await slow
    assert late.acs_user_id == fast.acs_user_id
    assert acs.live == {fast.acs_user_id} and len(acs.deleted) == 1
    invariants(store, acs)


async def test_storage_down_after_creation_discards_identity_instead_of_leaking():
    service, store, acs, _ = make()

    async def down(record):
        raise Unavailable("down")

    store.insert_user = down  # type: ignore[method-assign]
    with pytest.raises(Unavailable):
        await service.issue_token(alice, TokenRequest())
    assert not acs.live and len(acs.deleted) == 1


async def test_delete_revokes_blocks_tokens_and_restore_keeps_identity():
    service, store, acs, clock = make()
    issued = await service.issue_token(alice, TokenRequest())
    deleted = await service.delete("alice")
    assert deleted.state is UserState.DELETING and acs.revocations[issued.acs_user_id] == 1
    with pytest.raises(UserDeleted):
        await service.issue_token(alice, TokenRequest())
    with pytest.raises(UserDeleted):
        await service.revoke("alice")
    again = await service.delete("alice")  # idempotent, keeps the purge time
    assert again.purge_at == deleted.purge_at and len(store.purge) == 1
    restored = await service.restore("alice")
    assert restored.state is UserState.ACTIVE and restored.acs_user_id == issued.acs_user_id
    assert (await service.issue_token(alice, TokenRequest())).acs_user_id == issued.acs_user_id
    clock.advance(minutes=61)
    report = await service.purge()  # the index entry is stale now: skipped, identity kept
    assert issued.acs_user_id in acs.live and not store.purge
    assert report.purged == 0
    invariants(store, acs)


async def test_purge_waits_for_grace_then_deletes_identity_and_row():
    service, store, acs, clock = make(grace=60)
    issued = await service.issue_token(alice, TokenRequest())
    await service.delete("alice")
    clock.advance(minutes=59)
    assert (await service.purge()).purged == 0 and issued.acs_user_id in acs.live
    clock.advance(minutes=2)
    report = await service.purge()
    assert report.purged == 1 and issued.acs_user_id not in acs.live
    assert "alice" not in store.users and not store.purge
    with pytest.raises(NotFound):
        await service.get_user("alice")
    # a new sign-in after the purge gets a new identity
    fresh = await service.issue_token(alice, TokenRequest())
    assert fresh.acs_user_id != issued.acs_user_id
    invariants(store, acs)


async def test_grace_zero_means_next_purge_run():
    service, store, acs, _ = make(grace=0)
    await service.issue_token(alice, TokenRequest())
    await service.delete("alice")
    assert (await service.purge()).purged == 1 and not acs.live


async def test_purge_reads_only_due_entries():
    service, store, acs, clock = make(grace=0)
    for i in range(300):
        await service.issue_token(Caller(f"active-{i}"), TokenRequest())
    for i in range(5):
        await service.issue_token(Caller(f"gone-{i}"), TokenRequest())
        await service.delete(f"gone-{i}")
    clock.advance(minutes=2)  # let creation claims expire too
    store.reads = store.entities_read = 0
    await service.purge()  # first run also clears the 305 expired creation claims
    for i in range(5, 10):
        await service.issue_token(Caller(f"gone-{i}"), TokenRequest())
        await service.delete(f"gone-{i}")
    store.reads = store.entities_read = 0
    report = await service.purge()
    assert report.purged == 5
    # one index query + one point read per due user (+ the claims query): about N, not M
    assert store.entities_read <= 5 * 2 + 5 and store.reads <= 5 + 2


async def test_purge_is_bounded_by_batch_size():
    service, store, acs, _ = make(grace=0, PURGE_BATCH_SIZE="3")
    for i in range(5):
        await service.issue_token(Caller(f"u{i}"), TokenRequest())
        await service.delete(f"u{i}")
    first = await service.purge()
    assert first.purged == 3 and first.more_due
    second = await service.purge()
    assert second.purged == 2 and not second.more_due and not acs.live


@pytest.mark.parametrize("step", ["delete.indexed", "delete.marked"])
async def test_crash_during_delete_then_retry_finishes(step):
    service, store, acs, _ = make(grace=0, checkpoint=CrashAt(step))
    issued = await service.issue_token(alice, TokenRequest())
    with pytest.raises(Crash):
        await service.delete("alice")
    retried = await service.delete("alice")
    assert retried.state is UserState.DELETING
    assert acs.revocations.get(issued.acs_user_id, 0) >= 1
    assert (await service.purge()).purged == 1 and not acs.live
    invariants(store, acs)


async def test_crash_after_index_without_retry_never_purges_active_user():
    service, store, acs, _ = make(grace=0, checkpoint=CrashAt("delete.indexed"))
    issued = await service.issue_token(alice, TokenRequest())
    with pytest.raises(Crash):
        await service.delete("alice")
    report = await service.purge()
    assert report.skipped == 1 and issued.acs_user_id in acs.live and not store.purge
    assert store.users["alice"].state is UserState.ACTIVE


@pytest.mark.parametrize("step", ["purge.marked", "purge.acs_deleted", "purge.row_deleted"])
async def test_crash_during_purge_next_run_finishes(step):
    service, store, acs, _ = make(grace=0, checkpoint=CrashAt(step))
    await service.issue_token(alice, TokenRequest())
    await service.delete("alice")
    with pytest.raises(Crash):
        await service.purge()  # the process dies mid-run
    second = await service.purge()
    assert not acs.live and "alice" not in store.users and not store.purge
    assert second.purged + second.skipped >= 1
    invariants(store, acs)


async def test_restore_refused_once_purge_has_claimed_the_row():
    service, store, acs, _ = make(grace=0, checkpoint=CrashAt("purge.marked"))
    await service.issue_token(alice, TokenRequest())
    await service.delete("alice")
    with pytest.raises(Crash):
        await service.purge()  # dies right after marking the row purging
    assert store.users["alice"].state is UserState.PURGING
    with pytest.raises(Conflict):
        await service.restore("alice")
    await service.purge()
    assert not acs.live


async def test_restore_between_delete_and_purge_is_never_purged():
    service, store, acs, _ = make(grace=0)
    issued = await service.issue_token(alice, TokenRequest())
    await service.delete("alice")
    await service.restore("alice")
    await service.purge()
    assert issued.acs_user_id in acs.live and store.users["alice"].state is UserState.ACTIVE


async def test_redelete_after_restore_uses_new_due_time():
    service, store, acs, clock = make(grace=60)
    await service.issue_token(alice, TokenRequest())
    await service.delete("alice")
    await service.restore("alice")
    clock.advance(minutes=30)
    second = await service.delete("alice")
    clock.advance(minutes=31)  # first due time passed, second not
    await service.purge()
    assert store.users["alice"].state is UserState.DELETING and acs.live
    clock.advance(minutes=30)
    assert (await service.purge()).purged == 1
    assert second.purge_at is not None


async def test_purge_counts_identity_already_gone_as_deleted():
    service, store, acs, _ = make(grace=0)
    issued = await service.issue_token(alice, TokenRequest())
    await service.delete("alice")
    acs.live.discard(issued.acs_user_id)
    report = await service.purge()
    assert report.purged == 1 and report.already_gone == 1 and "alice" not in store.users


async def test_purge_under_throttling_leaves_work_for_next_run():
    service, store, acs, _ = make(grace=0)
    await service.issue_token(alice, TokenRequest())
    await service.delete("alice")
    acs.throttle_next["delete"] = 2
    report = await service.purge()
    assert report.throttled >= 1 and report.purged == 0 and store.users
    assert (await service.purge()).purged == 1 and not acs.live


async def test_events_revoke_delete_and_unknown_user():
    service, store, acs, _ = make()
    issued = await service.issue_token(alice, TokenRequest())
    revoke = UserEvent(EventAction.REVOKE, "alice", "TokenService.RevokeTokens", "1")
    assert await service.apply_event(revoke) == "revoked"
    assert acs.revocations[issued.acs_user_id] == 1
    delete = UserEvent(EventAction.DELETE, "alice", "Microsoft.Graph.UserDeleted", "2")
    assert await service.apply_event(delete) == "deleted"
    assert await service.apply_event(delete) == "deleted"  # duplicate delivery: harmless
    assert len(store.purge) == 1
    assert await service.apply_event(revoke) == "already_deleted"
    nobody = replace(revoke, user_id="nobody")
    assert await service.apply_event(nobody) == "no_mapping"
    assert "nobody" not in store.users


async def test_teams_exchange_only_for_the_callers_own_id():
    service, _, acs, _ = make()
    from shared.models import TeamsTokenRequest

    with pytest.raises(Forbidden):
        await service.exchange_teams_token(alice, TeamsTokenRequest("t", "app", "bob"))
    token = await service.exchange_teams_token(alice, TeamsTokenRequest("t", "app", "alice"))
    assert token.token == "teams-token" and acs.calls["exchange"] == 1


async def test_user_returning_right_after_purge_gets_a_new_identity_at_once():
    service, store, acs, _ = make(grace=0)
    first = await service.issue_token(alice, TokenRequest())
    await service.delete("alice")
    assert (await service.purge()).purged == 1 and not store.claims
    again = await service.issue_token(alice, TokenRequest())  # no wait on a stale claim
    assert again.acs_user_id != first.acs_user_id and acs.calls["create"] == 2
    invariants(store, acs)


async def test_insert_whose_answer_was_lost_keeps_our_identity():
    """The row insert lands but its answer is lost; the retry sees 'exists': it is ours."""
    service, store, acs, _ = make()
    original = store.insert_user
    calls = 0

    async def lost_answer(record):
        nonlocal calls
        calls += 1
        stored = await original(record)
        if calls == 1:
            from shared.errors import Unavailable as Lost

            raise Lost("timed out")
        return stored

    store.insert_user = lost_answer  # type: ignore[method-assign]
    issued = await service.issue_token(alice, TokenRequest())
    assert calls == 2 and store.users["alice"].acs_user_id == issued.acs_user_id
    assert acs.live == {issued.acs_user_id} and not acs.deleted
    invariants(store, acs)


async def test_claim_insert_whose_answer_was_lost_is_recognised_as_ours():
    service, store, acs, _ = make()
    original = store.insert_claim

    async def lost_answer(claim):
        await original(claim)
        store.insert_claim = original  # type: ignore[method-assign]
        from shared.errors import StoreConflict as Retried409

        raise Retried409("the SDK's retry found the row its first attempt wrote")

    store.insert_claim = lost_answer  # type: ignore[method-assign]
    issued = await service.issue_token(alice, TokenRequest())  # no 10 s wait, no 503
    assert acs.calls["create"] == 1 and store.users["alice"].acs_user_id == issued.acs_user_id
