"""Deletion, purge, restore and Event Grid events through the functions, on real
Azurite and the ACS emulator; events are decoded by azure-functions' own converter."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from tests.calls import call, request, run, run_timer
from tests.revoke_clock import aleave_revoke_second

pytestmark = pytest.mark.usefixtures("app_env")
ADMIN = "TokenService.Admin"


def decode(payload: dict):
    """What the worker hands to the function for one delivered event."""
    return EventGridEventInConverter.decode(meta.Datum(json.dumps(payload), "json"),
                                            trigger_metadata={})


def grid_event(event_type: str, data: dict, subject: str = "users") -> dict:
    return {"id": str(uuid.uuid4()), "topic": "/subscriptions/x/topics/t", "subject": subject,
            "eventType": event_type, "eventTime": "2026-11-21T00:00:00Z", "data": data,
            "dataVersion": "1.0"}


def cloud_event(event_type: str, data: dict, subject: str | None = None) -> dict:
    event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/tests",
             "type": event_type, "time": "2026-11-21T00:00:00Z", "data": data}
    if subject:
        event["subject"] = subject
    return event


async def deliver(payload: dict) -> None:
    await run("on_user_event", decode(payload))


async def purge() -> None:
    await run_timer("purge_deleted_users")


async def token(issuer, sub: str) -> dict:
    status, body, _ = await call("issue_token", request("POST", "token", token=issuer.mint(sub)))
    assert status == 200, body
    return body


async def test_delete_then_purge_removes_identity(issuer, acs):
    first = await token(issuer, "leaver")
    assert acs.stats()["identities"] == 1
    status, body, _ = await call("delete_me", request("DELETE", "me", token=issuer.mint("leaver")))
    assert status == 202 and body["state"] == "deleting"
    assert not acs.validate(first["token"])["valid"]
    await purge()
    assert first["acsUserId"] not in acs.identities()
    assert acs.validate(first["token"])["reason"]
    status, _, _ = await call("get_me", request("GET", "me", token=issuer.mint("leaver")))
    assert status == 404
    again = await token(issuer, "leaver")  # signing in again starts afresh
    assert again["acsUserId"] != first["acsUserId"]


async def test_grace_period_keeps_identity_until_due(issuer, acs, monkeypatch):
    from shared import runtime

    monkeypatch.setenv("DELETION_GRACE_MINUTES", "60")
    await runtime.reset()
    first = await token(issuer, "ponder")
    await call("delete_me", request("DELETE", "me", token=issuer.mint("ponder")))
    await aleave_revoke_second()  # the delete revoked: count only on tokens issued after it
    await purge()
    assert first["acsUserId"] in acs.identities()
    admin = issuer.mint("root", roles=[ADMIN])
    status, body, _ = await call("restore_user", request(
        "POST", "users/ponder/restore", token=admin, route_params={"userId": "ponder"}))
    assert status == 200 and body["state"] == "active" and body["acsUserId"] == first["acsUserId"]
    second = await token(issuer, "ponder")
    assert second["acsUserId"] == first["acsUserId"] and acs.validate(second["token"])["valid"]
    assert not acs.validate(first["token"])["valid"]  # revoked at delete, stays revoked


async def test_admin_delete_and_restore_need_admin(issuer, acs):
    await token(issuer, "target")
    admin = issuer.mint("root", roles=[ADMIN])
    status, body, _ = await call("delete_user", request(
        "DELETE", "users/target", token=admin, route_params={"userId": "target"}))
    assert status == 202 and body["state"] == "deleting"
    status, _, _ = await call("restore_user", request(
        "POST", "users/target/restore", token=issuer.mint("target"),
        route_params={"userId": "target"}))
    assert status == 403
    status, _, _ = await call("restore_user", request(
        "POST", "users/nobody/restore", token=admin, route_params={"userId": "nobody"}))
    assert status == 404


@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
async def test_revoke_event_invalidates_earlier_tokens_only(issuer, acs, schema):
    before = await token(issuer, "rev-user")
    make = grid_event if schema == "eventgrid" else cloud_event
    await deliver(make("TokenService.RevokeTokens", {"userId": "rev-user"}))
    assert not acs.validate(before["token"])["valid"]
    await aleave_revoke_second()  # a same-second token's fate on Azure is unknown
    after = await token(issuer, "rev-user")
    assert acs.validate(after["token"])["valid"]


@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
async def test_graph_user_deleted_event_deletes_by_object_id(issuer, acs, schema):
    oid = str(uuid.uuid4())
    issued = await token(issuer, oid)
    data = {"changeType": "deleted", "resource": f"Users/{oid}",
            "resourceData": {"@odata.type": "#Microsoft.Graph.User", "id": oid}}
    make = grid_event if schema == "eventgrid" else cloud_event
    await deliver(make("Microsoft.Graph.UserDeleted", data, subject=f"Users/{oid}"))
    await deliver(make("Microsoft.Graph.UserDeleted", data, subject=f"Users/{oid}"))  # duplicate
    assert not acs.validate(issued["token"])["valid"]
    status, body, _ = await call("get_me", request("GET", "me", token=issuer.mint(oid)))
    assert status == 200 and body["state"] == "deleting"
    await purge()
    assert issued["acsUserId"] not in acs.identities()


async def test_graph_user_updated_by_subject_only_revokes(issuer, acs):
    oid = str(uuid.uuid4())
    issued = await token(issuer, oid)
    await deliver(cloud_event("Microsoft.Graph.UserUpdated", {}, subject=f"Users/{oid}"))
    assert not acs.validate(issued["token"])["valid"]
    assert (await token(issuer, oid))["acsUserId"] == issued["acsUserId"]


@pytest.mark.parametrize("payload", [
    grid_event("Some.Other.Event", {"userId": "x"}),
    grid_event("TokenService.RevokeTokens", {"nobody": True}),
    grid_event("TokenService.RevokeTokens", "not-an-object"),
    grid_event("TokenService.DeleteUser", {"userId": "a\x00b"}),
    cloud_event("TokenService.DeleteUser", {"userId": "never-seen"}),
])
async def test_unknown_malformed_and_unmapped_events_are_acknowledged(issuer, acs, payload, caplog):
    await token(issuer, "bystander")
    caplog.set_level(logging.INFO)
    await deliver(payload)  # returns normally: Event Grid will not retry
    assert acs.stats()["requests"]["revokeAccessTokens"] == 0
    assert "on_user_event" in caplog.text


async def test_transient_failure_raises_so_event_grid_retries(issuer, acs):
    await token(issuer, "flaky")
    acs.set_faults(fault={"operation": "revokeAccessTokens", "status": 503, "count": 10})
    from shared.errors import Unavailable

    with pytest.raises(Unavailable):
        await deliver(grid_event("TokenService.RevokeTokens", {"userId": "flaky"}))
    acs.clear_faults()
    await deliver(grid_event("TokenService.RevokeTokens", {"userId": "flaky"}))
    assert acs.stats()["requests"]["revokeAccessTokens"] >= 2


async def test_purge_work_grows_with_due_users_not_all_users(issuer, acs):
    """5 due among 60 active users: the purge reads the index range and 5 rows."""
    from shared.telemetry import round_trips

    for i in range(60):
        await token(issuer, f"active-{i}")
    for i in range(5):
        await token(issuer, f"due-{i}")
        status, _, _ = await call("delete_me", request("DELETE", "me", token=issuer.mint(f"due-{i}")))
        assert status == 202
    round_trips.reset()
    await purge()
    counts = round_trips.snapshot()
    assert len(acs.identities()) == 60
    # 1 index query + 1 point read per due user + 1 expired-claims query (none expired yet)
    assert counts["tableReads"] == 1 + 5 + 1
    assert counts["acs"] == 5
    # per user: mark purging, delete claim, delete row, delete index entry
    assert counts["tableWrites"] == 5 * 4


def queue_message(body: bytes, dequeue_count: int = 1):
    """What the worker hands to a queue-triggered function (azure-functions' converter)."""
    from azure.functions.queue import QueueMessageInConverter

    metadata = {"Id": meta.Datum(str(uuid.uuid4()), "string"),
                "DequeueCount": meta.Datum(str(dequeue_count), "string")}
    return QueueMessageInConverter.decode(meta.Datum(body, "bytes"), trigger_metadata=metadata)


async def test_revoke_after_delete_trigger_revokes_a_deleted_user_only(issuer, acs):
    """The queue trigger behind a delete's second revoke (docs/protocol.md, "Delete"):
    a token issued after the delete's first revoke (as an issuance in flight would get
    it) dies; a restored user's tokens are left alone; bad messages are acknowledged."""
    from shared import queue

    first = await token(issuer, "twice")
    admin = issuer.mint("root", roles=[ADMIN])
    status, _, _ = await call("delete_user", request(
        "DELETE", "users/twice", token=admin, route_params={"userId": "twice"}))
    assert status == 202
    # A token ACS issued after the first revoke: what a request in flight would receive.
    from azure.communication.identity import (
        CommunicationIdentityClient,
        CommunicationUserIdentifier,
    )

    sdk = CommunicationIdentityClient.from_connection_string(acs.connection_string)
    late = sdk.get_token(CommunicationUserIdentifier(first["acsUserId"]), ["chat"]).token
    assert acs.validate(late)["valid"]
    await run("revoke_after_delete", queue_message(queue.encode("twice").encode()))
    assert acs.validate(late)["reason"] == "revoked"
    status, _, _ = await call("restore_user", request(
        "POST", "users/twice/restore", token=admin, route_params={"userId": "twice"}))
    assert status == 200
    fresh = await token(issuer, "twice")
    await run("revoke_after_delete", queue_message(queue.encode("twice").encode()))
    assert acs.validate(fresh["token"])["valid"]  # restored: left alone
    await run("revoke_after_delete", queue_message(b"not json"))  # acknowledged
