"""TableIdentityStore against a real Azurite: conditional writes, keys, the purge index."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.errors import BadRequest, PreconditionFailed, StoreConflict, Unavailable
from shared.models import Claim, PurgeEntry, UserRecord, UserState
from shared.store import TableIdentityStore

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
async def store(azurite, table_name):
    store = TableIdentityStore.from_connection_string(azurite.connection_string, table_name)
    yield store
    await store.close()


def record(user_id: str, acs_id: str = "8:acs:x_1") -> UserRecord:
    return UserRecord(user_id, acs_id, UserState.ACTIVE, NOW)


async def test_table_is_created_on_first_use_and_rows_round_trip(store):
    assert await store.get_user("alice") is None  # creates the table
    stored = await store.insert_user(record("alice"))
    assert stored.etag
    loaded = await store.get_user("alice")
    assert loaded == stored


async def test_insert_if_absent_and_etag_conditions(store):
    first = await store.insert_user(record("bob"))
    with pytest.raises(StoreConflict):
        await store.insert_user(record("bob", "8:acs:x_2"))
    deleting = await store.replace_user(
        UserRecord("bob", first.acs_user_id, UserState.DELETING, NOW, NOW, first.etag))
    assert deleting.etag != first.etag
    with pytest.raises(PreconditionFailed):
        await store.replace_user(first)  # stale ETag
    with pytest.raises(PreconditionFailed):
        await store.delete_user(first)
    await store.delete_user(deleting)
    assert await store.get_user("bob") is None
    with pytest.raises(PreconditionFailed):
        await store.replace_user(deleting)  # the row is gone


@pytest.mark.parametrize("user_id", [
    "a/b\\c#d?e", "ünïcødé-用户-🙂", "x" * 256, "é" * 128, "'; DROP TABLE --", "PartitionKey eq 'x'",
    "~claims", "u", "=", "a b",
])
async def test_hostile_ids_are_stored_safely_and_distinctly(store, user_id):
    await store.insert_user(record(user_id, f"8:acs:x_{len(user_id)}"))
    loaded = await store.get_user(user_id)
    assert loaded is not None and loaded.user_id == user_id
    other = user_id[:-1] + ("y" if user_id[-1] != "y" else "z")
    assert await store.get_user(other) is None


async def test_ids_that_cannot_be_keys_are_rejected(store):
    for bad in ("x" * 257, "é" * 129, "tab\there", "nul\x00", ""):
        with pytest.raises(BadRequest):
            await store.get_user(bad)


async def test_claims_lease_and_expiry_query(store):
    live = await store.insert_claim(Claim("c1", NOW + timedelta(seconds=60)))
    await store.insert_claim(Claim("c2", NOW - timedelta(seconds=1)))
    with pytest.raises(StoreConflict):
        await store.insert_claim(Claim("c1", NOW))
    expired = await store.expired_claims(NOW, 10)
    assert [c.user_id for c in expired] == ["c2"]
    renewed = await store.replace_claim(Claim("c1", NOW + timedelta(seconds=120), live.etag))
    with pytest.raises(PreconditionFailed):
        await store.replace_claim(live)
    await store.delete_claim(renewed)
    assert await store.get_claim("c1") is None


async def test_purge_index_reads_only_due_entries(store):
    for i in range(30):
        await store.put_purge_entry(PurgeEntry(f"later-{i}", NOW + timedelta(minutes=1 + i)))
    for i in range(3):
        await store.put_purge_entry(PurgeEntry(f"due-{i}", NOW - timedelta(minutes=i)))
    due = await store.due_purge_entries(NOW, 100)
    assert sorted(e.user_id for e in due) == ["due-0", "due-1", "due-2"]
    assert [e.due for e in due] == sorted(e.due for e in due)  # oldest first
    assert len(await store.due_purge_entries(NOW, 2)) == 2
    await store.delete_purge_entry(due[0])
    await store.delete_purge_entry(due[0])  # idempotent
    assert len(await store.due_purge_entries(NOW, 100)) == 2


async def test_unreachable_table_is_unavailable(table_name):
    from localdev.azurite import AzuriteProcess

    with AzuriteProcess() as dead:
        store = TableIdentityStore.from_connection_string(dead.connection_string, table_name)
    try:
        with pytest.raises(Unavailable):
            await store.get_user("alice")
        with pytest.raises(Unavailable):
            await store.insert_user(record("alice"))
    finally:
        await store.close()
