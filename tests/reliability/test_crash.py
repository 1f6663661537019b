"""Crash injection at every step of every multi-step write, against real Azurite and the
ACS emulator: the invocation dies at a named checkpoint (``runtime.set_checkpoint``), a new
worker starts, and the next request or purge run recovers with the invariants intact."""

from __future__ import annotations

import logging
import re

import pytest

from shared import runtime
from tests.calls import call, request
from tests.reliability.support import (
    ADMIN,
    DieAt,
    ProcessDied,
    expire_claims,
    invariants,
    purge,
    rows,
    user_rows,
)
from tests.revoke_clock import aleave_revoke_second

pytestmark = pytest.mark.usefixtures("app_env")


async def die_at(step: str, name: str, req) -> DieAt:
    """Run one invocation that dies at ``step``; then start a fresh worker without a hook."""
    hook = DieAt(step)
    runtime.set_checkpoint(hook)
    invocation = purge() if name == "purge" else call(name, req)
    with pytest.raises(ProcessDied):
        await invocation
    assert not hook.armed, f"the invocation never reached {step}: {hook.seen}"
    await runtime.reset()  # the process died: a new one starts with new clients
    return hook


def token_request(issuer, user):
    return request("POST", "token", token=issuer.mint(user))


def admin_request(issuer, method, path, user):
    return request(method, path, token=issuer.mint("root", roles=[ADMIN]),
                   route_params={"userId": user})


# -- first token ---------------------------------------------------------------------------

async def test_crash_after_claim_is_recovered_by_the_next_request(issuer, acs):
    await die_at("first_token.claimed", "issue_token", token_request(issuer, "phoenix"))
    report = await invariants(acs)
    assert report.ok, report.summary()
    assert report.claims == 1 and not report.identities and not report.rows
    assert expire_claims() == 1  # its lease lapses (the creator is dead)
    status, body, _ = await call("issue_token", token_request(issuer, "phoenix"))
    assert status == 200, body
    report = await invariants(acs, tokens=[(body["token"], True)])
    assert report.ok, report.summary()
    assert report.identities == [body["acsUserId"]]
    # The finished creation leaves its claim behind; once its lease is over, the next
    # purge run clears it.
    expire_claims()
    await purge()
    assert not rows("~claims")


async def test_crash_after_claim_is_taken_over_when_the_real_lease_lapses(
        issuer, acs, monkeypatch):
    """No table surgery: CREATE_LEASE_SECONDS=5 and the next request simply waits it out."""
    monkeypatch.setenv("CREATE_LEASE_SECONDS", "5")
    await runtime.reset()
    await die_at("first_token.claimed", "issue_token", token_request(issuer, "patient"))
    status, body, _ = await call("issue_token", token_request(issuer, "patient"))
    assert status == 200, body
    report = await invariants(acs)
    assert report.ok, report.summary()
    assert acs.stats()["requests"]["createIdentity"] == 1


async def test_crash_after_acs_created_the_identity_leaks_exactly_that_identity(
        issuer, acs, caplog):
    """The irreducible window: ACS made the identity, the process died before the row
    insert. ACS cannot list identities, so the log line is the record of last resort; the
    checker must see exactly that one leak, and the user must still end up with one
    working identity."""
    caplog.set_level(logging.INFO, logger="acs_token_service")
    await die_at("first_token.created", "issue_token", token_request(issuer, "icarus"))
    logged = re.findall(r"event=acs_identity_created .*?acsUserId=(\S+)", caplog.text)
    assert len(logged) == 1
    report = await invariants(acs)
    assert [v.kind for v in report.violations] == ["leaked_identity"]
    assert report.leaked == logged
    expire_claims()
    status, body, _ = await call("issue_token", token_request(issuer, "icarus"))
    assert status == 200 and body["acsUserId"] != logged[0]
    report = await invariants(acs, tokens=[(body["token"], True)])
    assert report.leaked == logged and len(report.violations) == 1, report.summary()
    assert user_rows()["icarus"]["AcsUserId"] == body["acsUserId"]


async def test_crash_after_the_row_is_recorded_keeps_the_identity(issuer, acs):
    await die_at("first_token.recorded", "issue_token", token_request(issuer, "daedalus"))
    report = await invariants(acs)
    assert report.ok, report.summary()
    recorded = user_rows()["daedalus"]["AcsUserId"]
    status, body, _ = await call("issue_token", token_request(issuer, "daedalus"))
    assert status == 200 and body["acsUserId"] == recorded
    assert acs.stats()["requests"]["createIdentity"] == 1
    assert (await invariants(acs)).ok


# -- delete --------------------------------------------------------------------------------

@pytest.mark.parametrize("step", ["delete.indexed", "delete.marked", "delete.revoked"])
async def test_crash_during_delete_is_finished_by_a_retry_then_purged(issuer, acs, step):
    status, first, _ = await call("issue_token", token_request(issuer, "leaver"))
    assert status == 200
    old = first["token"]
    await die_at(step, "delete_me", request("DELETE", "me", token=issuer.mint("leaver")))
    report = await invariants(acs)
    assert report.ok, report.summary()
    state = user_rows()["leaver"]["State"]
    assert state == ("active" if step == "delete.indexed" else "deleting")
    # Revocation happens only after the row is marked; a crash before it leaves old tokens
    # working until the delete is retried (the caller saw a failure, so it retries).
    assert acs.validate(old)["valid"] is (step != "delete.revoked")
    await purge()  # a purge run in between never purges what the row does not say
    after = user_rows()
    if step == "delete.indexed":
        assert after["leaver"]["State"] == "active" and not rows("~purge")
    else:
        assert "leaver" not in after  # grace 0: the marked user is purged
    report = await invariants(acs, tokens=[(old, False)] if step != "delete.indexed" else [])
    assert report.ok, report.summary()
    status, body, _ = await call("delete_me", request("DELETE", "me", token=issuer.mint("leaver")))
    if step == "delete.indexed":
        assert status == 202 and body["state"] == "deleting"
        await purge()
    else:
        assert status == 404  # already purged
    report = await invariants(acs, tokens=[(old, False)])
    assert report.ok, report.summary()
    assert not report.rows and not report.identities and report.purge_entries == 0


@pytest.mark.parametrize("step", ["delete.marked", "delete.revoked"])
async def test_retried_delete_finishes_the_job_and_keeps_the_purge_time(
        issuer, acs, monkeypatch, step):
    monkeypatch.setenv("DELETION_GRACE_MINUTES", "60")
    await runtime.reset()
    status, first, _ = await call("issue_token", token_request(issuer, "waverer"))
    assert status == 200
    await die_at(step, "delete_user", admin_request(issuer, "DELETE", "users/x", "waverer"))
    purge_at = user_rows()["waverer"]["PurgeAt"]
    status, body, _ = await call("delete_user", admin_request(issuer, "DELETE", "users/x",
                                                              "waverer"))
    assert status == 202 and body["state"] == "deleting"
    assert user_rows()["waverer"]["PurgeAt"] == purge_at  # never moved
    before = await invariants(acs, tokens=[(first["token"], False)])
    assert before.ok, before.summary()
    await purge()  # not due for an hour: nothing may go
    report = await invariants(acs, previous=before, grace_minutes=60)
    assert report.ok, report.summary()
    assert report.rows["waverer"].state == "deleting" and len(report.identities) == 1


# -- restore -------------------------------------------------------------------------------

async def test_crash_after_restore_marked_leaves_an_active_user_the_purge_skips(issuer, acs):
    status, first, _ = await call("issue_token", token_request(issuer, "lazarus"))
    assert status == 200
    status, _, _ = await call("delete_user", admin_request(issuer, "DELETE", "users/x", "lazarus"))
    assert status == 202
    await die_at("restore.marked", "restore_user",
                 admin_request(issuer, "POST", "users/x/restore", "lazarus"))
    report = await invariants(acs)
    assert report.ok, report.summary()
    assert report.rows["lazarus"].state == "active" and report.purge_entries == 1
    await purge()  # the stale index entry (grace 0: it is due) must not purge the user
    report = await invariants(acs)
    assert report.ok, report.summary()
    assert report.rows["lazarus"].state == "active" and report.purge_entries == 0
    status, body, _ = await call("restore_user", admin_request(issuer, "POST", "users/x/restore",
                                                               "lazarus"))
    assert status == 200 and body["state"] == "active"
    await aleave_revoke_second()  # the delete revoked: count only on tokens issued after it
    status, body, _ = await call("issue_token", token_request(issuer, "lazarus"))
    assert status == 200 and body["acsUserId"] == first["acsUserId"]
    assert acs.validate(body["token"])["valid"] and not acs.validate(first["token"])["valid"]


# -- purge ---------------------------------------------------------------------------------

@pytest.mark.parametrize("step", ["purge.marked", "purge.acs_deleted", "purge.row_deleted"])
async def test_crash_during_purge_is_finished_by_the_next_run(issuer, acs, step):
    status, first, _ = await call("issue_token", token_request(issuer, "gone"))
    assert status == 200
    status, _, _ = await call("delete_me", request("DELETE", "me", token=issuer.mint("gone")))
    assert status == 202
    await die_at(step, "purge", None)
    report = await invariants(acs, tokens=[(first["token"], False)])
    assert report.ok, report.summary()
    expected_state = {"purge.marked": "purging", "purge.acs_deleted": "purging"}.get(step)
    assert (report.rows["gone"].state if "gone" in report.rows else None) == expected_state
    assert bool(report.identities) is (step == "purge.marked")
    await purge()
    report = await invariants(acs, tokens=[(first["token"], False)])
    assert report.ok, report.summary()
    assert not report.rows and not report.identities and report.purge_entries == 0
    # Restore is refused while purging, and after the purge the user starts afresh.
    status, body, _ = await call("issue_token", token_request(issuer, "gone"))
    assert status == 200 and body["acsUserId"] != first["acsUserId"]
    assert (await invariants(acs)).ok


async def test_restore_is_refused_while_a_purge_is_half_done(issuer, acs):
    assert (await call("issue_token", token_request(issuer, "limbo")))[0] == 200
    assert (await call("delete_me", request("DELETE", "me", token=issuer.mint("limbo"))))[0] == 202
    await die_at("purge.marked", "purge", None)
    status, body, _ = await call("restore_user", admin_request(issuer, "POST", "users/x/restore",
                                                               "limbo"))
    assert status == 409 and body["error"]["code"] == "conflict"
    status, body, _ = await call("issue_token", token_request(issuer, "limbo"))
    assert status == 410
    await purge()
    assert (await invariants(acs)).ok
