"""The invariant checker catches each violation it claims to (so a green report means
something), against real Azurite and the ACS emulator."""

from __future__ import annotations

import base64
import os
from datetime import datetime, timedelta, timezone

import pytest

from localdev import invariants as inv
from tests.calls import call, request
from tests.reliability.support import invariants, table_client

pytestmark = pytest.mark.usefixtures("app_env")
FMT = "%Y-%m-%dT%H:%M:%S.%fZ"


def key(user_id: str) -> str:
    return "u" + base64.urlsafe_b64encode(user_id.encode()).decode().rstrip("=")


def put_row(user_id: str, acs_id: str, state: str = "active", purge_at: datetime | None = None,
            index: bool = False) -> None:
    entity = {"PartitionKey": key(user_id), "RowKey": "user", "UserId": user_id,
              "AcsUserId": acs_id, "State": state,
              "CreatedAt": datetime.now(timezone.utc).strftime(FMT)}
    if purge_at is not None:
        entity["PurgeAt"] = purge_at.strftime(FMT)
    with table_client() as client:
        client.upsert_entity(entity)
        if index and purge_at is not None:
            client.upsert_entity({"PartitionKey": "~purge",
                                  "RowKey": purge_at.strftime("%Y%m%dT%H%M%SZ") + "_" + key(user_id),
                                  "UserId": user_id, "Due": purge_at.strftime(FMT)})


async def issued(issuer, user: str) -> dict:
    status, body, _ = await call("issue_token", request("POST", "token", token=issuer.mint(user)))
    assert status == 200
    return body


async def test_a_consistent_table_is_ok_and_an_empty_one_too(issuer, acs):
    report = await invariants(acs)  # the table does not even exist yet
    assert report.ok and not report.rows
    await issued(issuer, "fine")
    report = await invariants(acs)
    assert report.ok and len(report.rows) == 1 and report.claims == 1


async def test_each_violation_is_reported(issuer, acs):
    from azure.communication.identity import CommunicationIdentityClient

    alice = await issued(issuer, "alice")
    bob = await issued(issuer, "bob")
    client = CommunicationIdentityClient.from_connection_string(acs.connection_string)
    leaked = client.create_user().properties["id"]
    hasty = client.create_user().properties["id"]
    future = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    put_row("alice-twin", alice["acsUserId"])                                # duplicate
    put_row("ghost", "8:acs:nobody_00000000-0000-0000-0000-000000000000")   # dangling
    put_row("unindexed", bob["acsUserId"] + "-x", "deleting", future)       # dangling+unindexed
    put_row("hasty", hasty, "purging", future, index=True)       # purged early
    status, _, _ = await call("revoke_me", request("POST", "me/revoke", token=issuer.mint("alice")))
    assert status == 204
    report = await invariants(acs, tokens=[(alice["token"], True), (bob["token"], False)])
    kinds = sorted(v.kind for v in report.violations)
    assert kinds == sorted(["leaked_identity", "duplicate_identity", "dangling_row",
                            "dangling_row", "unindexed_deletion", "purged_early",
                            "token_invalid", "token_still_valid"]), report.summary()
    assert report.leaked == [leaked]
    assert not report.ok and "violation" in report.summary()


async def test_rows_vanishing_before_their_grace_period_are_reported(issuer, acs):
    body = await issued(issuer, "early")
    future = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    put_row("early", body["acsUserId"], "deleting", future, index=True)
    await issued(issuer, "active-one")
    before = await invariants(acs)
    assert before.ok, before.summary()
    with table_client() as client:
        client.delete_entity(key("early"), "user")
        client.delete_entity(key("active-one"), "user")
    report = await invariants(acs, previous=before, grace_minutes=60)
    assert sorted(v.user_id for v in report.of_kind("purged_early")) == ["active-one", "early"]


async def test_cli_exit_status(issuer, acs, capsys):
    await issued(issuer, "cli")
    args = ["--table-connection", os.environ["IDENTITY_TABLE_CONNECTION"],
            "--table-name", os.environ["IDENTITY_TABLE_NAME"],
            "--acs-endpoint", acs.endpoint, "--ca-file", acs.ca_file]
    assert inv.main(args) == 0
    assert "all invariants hold" in capsys.readouterr().out
    put_row("cli-ghost", "8:acs:nobody_1")
    assert inv.main([*args, "--json"]) == 1
    assert '"dangling_row"' in capsys.readouterr().out


async def test_a_purge_between_the_pages_of_the_checkers_read_is_not_a_violation(issuer, acs):
    """Item 4 of issue 16: the checker reported ``unindexed_deletion`` while a purge ran.

    Reproduced deterministically: with more than one page of rows (Table Storage returns
    at most 1,000 entities per page, sorted by PartitionKey then RowKey, so the user rows
    come before ``~purge``), a real purge run is made to happen after the first page and
    before the second. The user row was read as ``deleting``; the purge then deleted row
    and index entry. The checker must not call that a violation."""
    import asyncio
    import threading

    from azure.data.tables import TableClient

    from tests.reliability.support import purge, user_rows

    await issued(issuer, "leaver")  # DELETION_GRACE_MINUTES=0 (app_env): due at once
    status, _, _ = await call("delete_me", request("DELETE", "me", token=issuer.mint("leaver")))
    assert status == 202
    await issued(issuer, "stayer")
    # Filler: 1,000 creation claims with a live lease (the purge leaves those alone).
    lease = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime(FMT)
    with table_client() as client:
        for start in range(0, 1000, 100):
            client.submit_transaction([("upsert", {
                "PartitionKey": "~claims", "RowKey": f"filler-{i:04d}", "UserId": f"f{i}",
                "LeaseUntil": lease, "Owner": ""}) for i in range(start, start + 100)])

    second_page, resume = threading.Event(), threading.Event()
    requests: list[str] = []

    def hook(request) -> None:
        requests.append(request.http_request.url)
        if len(requests) == 2:  # the listing's second page is about to be fetched
            second_page.set()
            assert resume.wait(60)

    loop = asyncio.get_running_loop()
    with TableClient.from_connection_string(os.environ["IDENTITY_TABLE_CONNECTION"],
                                            os.environ["IDENTITY_TABLE_NAME"],
                                            raw_request_hook=hook) as paused:
        checking = asyncio.ensure_future(invariants(acs, table=paused))
        assert await loop.run_in_executor(None, second_page.wait, 60)
        try:
            await purge()
        finally:
            resume.set()
        report = await checking
    assert "leaver" not in user_rows()  # the purge really ran in between
    assert report.rows["leaver"].state in ("deleting", "purging")  # ... after the row was read
    assert report.ok, report.summary()
    assert report.claims == 1001 and set(report.rows) == {"leaver", "stayer"}  # leaver's went
