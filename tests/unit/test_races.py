"""The mapping protocol's races (issues 12.1, 12.2, 16.1) over in-memory ports.

Each test makes the interleaving explicit with events, so it is deterministic; the same
races over real HTTP against Azurite and the ACS emulator are in
tests/e2e/test_protocol_races.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from shared import service as service_module
from shared.errors import Conflict, NotFound, Unavailable, UserDeleted
from shared.models import Caller, EventAction, TokenRequest, UserEvent, UserRecord, UserState
from tests.fakes import FakeAcs, FakeScheduler, MemoryStore
from tests.unit.test_service import invariants, make

alice = Caller("alice")


def valid(acs: FakeAcs, token: str) -> bool:
    """FakeAcs tokens are `tok-<identity>-<revocation generation>`: valid while the
    identity lives and has not been revoked since."""
    prefix, _, generation = token.rpartition("-")
    acs_id = prefix[len("tok-"):]
    return acs_id in acs.live and int(generation) == acs.revocations.get(acs_id, 0)


class Gate:
    """Holds one ACS operation until released: ``before`` it reaches ACS (a request
    still on its way, or sleeping out a Retry-After) or after ACS did its work (the
    answer is on its way back)."""

    def __init__(self, acs: FakeAcs, name: str, *, before: bool = False) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        original = getattr(acs, name)

        async def held(*args, **kwargs):
            if before:
                self.entered.set()
                await self.release.wait()
                return await original(*args, **kwargs)
            result = await original(*args, **kwargs)
            self.entered.set()
            await self.release.wait()
            return result

        setattr(acs, name, held)


# -- 12.1: a token issued while a delete runs ---------------------------------------------


async def test_token_in_flight_during_delete_dies_by_the_delayed_revoke(caplog):
    caplog.set_level("INFO", logger="acs_token_service")
    scheduler = FakeScheduler()
    service, store, acs, _ = make(scheduler=scheduler, ACS_TIMEOUT_SECONDS="4")
    await service.issue_token(alice, TokenRequest())
    gate = Gate(acs, "get_token", before=True)  # the row was read; ACS not yet reached
    in_flight = asyncio.create_task(service.issue_token(alice, TokenRequest()))
    await gate.entered.wait()
    deleted = await service.delete("alice")  # marks, schedules, revokes
    assert deleted.state is UserState.DELETING
    gate.release.set()
    survivor = await in_flight
    # Before the fix this token stayed valid until the purge.
    assert valid(acs, survivor.token)
    # The second revoke comes after the longest possible issuance.
    assert scheduler.scheduled == [("alice", 4 + 3.0 + 3.0)]
    assert service_module.revoke_delay_seconds(service._settings) > (
        service_module.issue_deadline_seconds(service._settings))
    assert await scheduler.run_due(service) == ["revoked"]
    assert not valid(acs, survivor.token)
    assert "metric=delayed_revocations value=1" in caplog.text


async def test_an_issuance_past_its_deadline_returns_no_token(monkeypatch):
    monkeypatch.setattr(service_module, "ISSUE_SLACK_SECONDS", 0.0)
    service, store, acs, _ = make(ACS_TIMEOUT_SECONDS="1")
    await service.issue_token(alice, TokenRequest())
    gate = Gate(acs, "get_token")  # never released: ACS's answer never comes in time
    with pytest.raises(Unavailable):
        await service.issue_token(alice, TokenRequest())
    assert gate.entered.is_set()


async def test_repeat_token_cost_is_unchanged_and_schedules_nothing():
    scheduler = FakeScheduler()
    service, store, acs, _ = make(scheduler=scheduler)
    await service.issue_token(alice, TokenRequest())
    store.reads = store.writes = 0
    acs.calls.clear()
    await service.issue_token(alice, TokenRequest())
    assert (store.reads, store.writes, acs.calls) == (1, 0, {"issue": 1})
    assert scheduler.scheduled == []


async def test_a_delete_that_cannot_schedule_fails_and_its_retry_completes():
    scheduler = FakeScheduler()
    service, store, acs, _ = make(scheduler=scheduler)
    issued = await service.issue_token(alice, TokenRequest())
    scheduler.fail_next = 1
    with pytest.raises(Unavailable):
        await service.delete("alice")
    assert store.users["alice"].state is UserState.DELETING  # marked, not yet revoked
    again = await service.delete("alice")  # the client's (or Event Grid's) retry
    assert again.state is UserState.DELETING and not valid(acs, issued.token)
    assert [user for user, _ in scheduler.scheduled] == ["alice"]


async def test_delayed_revoke_leaves_a_restored_user_alone_and_skips_a_purged_one():
    scheduler = FakeScheduler()
    service, store, acs, clock = make(scheduler=scheduler, grace=0)
    await service.issue_token(alice, TokenRequest())
    await service.delete("alice")
    await service.restore("alice")
    fresh = await service.issue_token(alice, TokenRequest())
    assert await scheduler.run_due(service) == ["skipped"]
    assert valid(acs, fresh.token)
    await service.delete("alice")
    await service.purge()
    assert await scheduler.run_due(service) == ["skipped"]
    invariants(store, acs)


# -- 12.2: a delete during the user's first token ----------------------------------------


@pytest.mark.parametrize("how", ["admin", "event"])
async def test_delete_during_first_token_wins(how):
    service, store, acs, _ = make()
    gate = Gate(acs, "create_user_and_token")
    first = asyncio.create_task(service.issue_token(alice, TokenRequest()))
    await gate.entered.wait()  # claimed, identity created, row not yet recorded
    if how == "admin":
        record = await service.delete("alice")  # was 404
        assert record.state is UserState.DELETING and not record.has_identity
    else:
        event = UserEvent(EventAction.DELETE, "alice", "Microsoft.Graph.UserDeleted", "1")
        assert await service.apply_event(event) == "deleted"  # was "no_mapping"
    gate.release.set()
    with pytest.raises(UserDeleted):
        await first
    assert not acs.live and len(acs.deleted) == 1  # the creation discarded its identity
    with pytest.raises(UserDeleted):
        await service.issue_token(alice, TokenRequest())
    invariants(store, acs)


async def test_tombstone_cannot_be_restored_and_is_purged_like_any_deleted_user():
    service, store, acs, clock = make(grace=0, CREATE_LEASE_SECONDS="30")
    gate = Gate(acs, "create_user_and_token")
    first = asyncio.create_task(service.issue_token(alice, TokenRequest()))
    await gate.entered.wait()
    tombstone = await service.delete("alice")
    # Even with no grace period the tombstone outlives two creation leases.
    assert (tombstone.purge_at - tombstone.created_at).total_seconds() >= 60
    gate.release.set()
    with pytest.raises(UserDeleted):
        await first
    with pytest.raises(Conflict):
        await service.restore("alice")
    assert (await service.purge()).purged == 0
    clock.advance(seconds=61)
    assert (await service.purge()).purged == 1
    assert not store.users and not store.claims
    fresh = await service.issue_token(alice, TokenRequest())  # afresh after the purge
    assert fresh.acs_user_id in acs.live
    invariants(store, acs)


async def test_delete_of_a_user_never_seen_is_still_404():
    service, store, *_ = make()
    with pytest.raises(NotFound):
        await service.delete("nobody")
    assert not store.users and not store.purge


async def test_creation_recorded_just_before_the_tombstone_is_deleted_normally():
    service, store, acs, _ = make()
    original = store.get_claim

    async def row_lands_first(user_id):
        claim = await original(user_id)
        # The creator records its row between the delete's row read and its tombstone.
        acs_id, _ = await acs.create_user_and_token([], 60)
        await store.insert_user(UserRecord(user_id, acs_id, UserState.ACTIVE,
                                           claim.lease_until))
        return claim

    await service._claim("alice")
    store.get_claim = row_lands_first  # type: ignore[method-assign]
    record = await service.delete("alice")
    assert record.state is UserState.DELETING and record.has_identity
    invariants(store, acs)


# -- 16.1: a storage stall never locks a user out -----------------------------------------


async def stalled_first_token(service, store: MemoryStore):
    """The row insert times out three times (compensation deletes the identity, 503),
    then the stalled insert lands after all: `active` for a deleted identity."""
    landed: list[UserRecord] = []
    original = store.insert_user

    async def stalled(record):
        landed.append(record)
        raise Unavailable("read timeout")

    store.insert_user = stalled  # type: ignore[method-assign]
    with pytest.raises(Unavailable):
        await service.issue_token(alice, TokenRequest())
    store.insert_user = original  # type: ignore[method-assign]
    await original(landed[0])
    return landed[0]


async def test_a_late_insert_after_compensation_heals_on_the_next_token(caplog):
    service, store, acs, _ = make()
    stale = await stalled_first_token(service, store)
    assert stale.acs_user_id in acs.deleted and store.users["alice"].state is UserState.ACTIVE
    caplog.set_level("INFO", logger="acs_token_service")
    issued = await service.issue_token(alice, TokenRequest())  # was 410, forever
    assert "metric=identities_healed value=1" in caplog.text
    assert "event=acs_identity_created" in caplog.text and "healed=True" in caplog.text
    assert issued.acs_user_id != stale.acs_user_id and valid(acs, issued.token)
    assert store.users["alice"].acs_user_id == issued.acs_user_id
    again = await service.issue_token(alice, TokenRequest())
    assert again.acs_user_id == issued.acs_user_id
    invariants(store, acs)


async def test_concurrent_healers_agree_on_one_identity():
    service, store, acs, _ = make()
    await stalled_first_token(service, store)
    results = await asyncio.gather(*(service.issue_token(alice, TokenRequest())
                                     for _ in range(20)), return_exceptions=True)
    issued = [r for r in results if not isinstance(r, BaseException)]
    assert issued and len({r.acs_user_id for r in issued}) == 1
    assert all(isinstance(r, Unavailable) for r in results if isinstance(r, BaseException))
    assert acs.live == {store.users["alice"].acs_user_id}
    invariants(store, acs)


async def test_a_heal_that_loses_to_a_delete_discards_its_identity():
    service, store, acs, _ = make()
    await stalled_first_token(service, store)
    gate = Gate(acs, "create_user_and_token")
    healing = asyncio.create_task(service.issue_token(alice, TokenRequest()))
    await gate.entered.wait()
    await service.delete("alice")
    gate.release.set()
    with pytest.raises(UserDeleted):
        await healing
    assert not acs.live
    invariants(store, acs)


async def test_a_deleting_row_is_never_healed():
    service, store, acs, _ = make()
    await stalled_first_token(service, store)
    store.users["alice"] = replace(store.users["alice"], state=UserState.DELETING)
    with pytest.raises(UserDeleted):
        await service.issue_token(alice, TokenRequest())
    assert not acs.live


# -- crashes at the new checkpoints (docs/protocol.md's tables) ----------------------------


async def test_crash_after_scheduling_leaves_the_queued_revoke_to_finish():
    from tests.fakes import Crash, CrashAt

    scheduler = FakeScheduler()
    service, store, acs, _ = make(scheduler=scheduler, checkpoint=CrashAt("delete.scheduled"))
    issued = await service.issue_token(alice, TokenRequest())
    with pytest.raises(Crash):
        await service.delete("alice")
    assert store.users["alice"].state is UserState.DELETING and valid(acs, issued.token)
    assert await scheduler.run_due(service) == ["revoked"]  # the queued message's run
    assert not valid(acs, issued.token)
    invariants(store, acs)


async def test_crash_after_tombstone_leaves_the_user_deleted():
    from tests.fakes import Crash, CrashAt

    service, store, acs, _ = make(checkpoint=CrashAt("delete.tombstoned"))
    gate = Gate(acs, "create_user_and_token")
    first = asyncio.create_task(service.issue_token(alice, TokenRequest()))
    await gate.entered.wait()
    with pytest.raises(Crash):
        await service.delete("alice")
    gate.release.set()
    with pytest.raises(UserDeleted):
        await first
    record = await service.delete("alice")  # the retry finds the tombstone: done
    assert record.state is UserState.DELETING and not record.has_identity
    assert len(store.purge) == 1 and not acs.live
    invariants(store, acs)


async def test_crash_after_heal_recorded_keeps_the_healed_identity():
    from tests.fakes import Crash, CrashAt

    service, store, acs, _ = make(checkpoint=CrashAt("heal.recorded"))
    await stalled_first_token(service, store)
    with pytest.raises(Crash):
        await service.issue_token(alice, TokenRequest())
    healed = store.users["alice"].acs_user_id
    assert healed in acs.live
    issued = await service.issue_token(alice, TokenRequest())
    assert issued.acs_user_id == healed
    invariants(store, acs)
