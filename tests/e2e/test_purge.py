"""Delete, then the purge timer (run through the admin API) removes the ACS identity.

The session stack runs with DELETION_GRACE_MINUTES=0, so a deleted user is due at once.
``POST /admin/functions/NAME`` answers 202 and runs the function in the background: the
test polls the emulator (bounded) until the identity is gone.
"""

from __future__ import annotations

from tests.revoke_clock import leave_revoke_second

from .helpers import StackClient, wait_for


def test_delete_then_purge_removes_the_identity(client: StackClient) -> None:
    _, bearer = client.new_user()
    issued = client.issue(bearer)
    acs_user = issued["acsUserId"]
    assert acs_user in client.identities()

    deleted = client.call("DELETE", "/me", bearer)
    assert deleted.status == 202, deleted.body
    assert deleted.json()["state"] == "deleting"
    assert "purgeAfter" in deleted.json()
    # Revoked at once; the identity itself stays until the purge (restorable until then).
    assert client.validate(issued["token"])["reason"] == "revoked"
    assert acs_user in client.identities()

    fired = client.run_purge()
    assert fired.status == 202, fired.body
    wait_for(lambda: acs_user not in client.identities(), timeout=30,
             what=f"the purge to delete {acs_user}")

    assert client.validate(issued["token"])["reason"] == "deleted"
    gone = wait_for(lambda: (r := client.call("GET", "/me", bearer)).status == 404 and r,
                    timeout=30, what="the mapping row to be deleted")
    assert gone.json()["error"]["code"]


def test_restore_within_grace_keeps_the_identity(client: StackClient) -> None:
    """Admin restore before the purge runs: same ACS identity, tokens issued again."""
    user, bearer = client.new_user()
    admin = client.mint("e2e-admin", roles=("TokenService.Admin",))
    issued = client.issue(bearer)
    assert client.call("DELETE", "/me", bearer).status == 202
    leave_revoke_second()  # the delete revoked: count only on tokens issued after it
    restored = client.call("POST", f"/users/{user}/restore", admin)
    assert restored.status == 200, restored.body
    assert restored.json()["state"] == "active"
    again = client.issue(bearer)
    assert again["acsUserId"] == issued["acsUserId"]
    assert client.validate(again["token"])["valid"] is True


def test_revoke_me(client: StackClient) -> None:
    _, bearer = client.new_user()
    issued = client.issue(bearer)
    assert client.call("POST", "/me/revoke", bearer).status == 204
    assert client.validate(issued["token"])["reason"] == "revoked"
    leave_revoke_second()  # a same-second token's fate on Azure is unknown
    assert client.validate(client.issue(bearer)["token"])["valid"] is True
