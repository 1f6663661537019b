"""Dependency faults: ACS throttling, errors, resets and hangs (the emulator's fault
injection) and Table Storage going away (a private Azurite, stopped and restarted).

The contract under every fault: callers get 429 or 503 with Retry-After, never 500 and
never internals; retries are bounded; everything recovers when the dependency returns,
with nothing lost or leaked (the invariant checker)."""

from __future__ import annotations

import json

import pytest

from shared import runtime
from tests.calls import call, request
from tests.reliability.support import ADMIN, expire_claims, invariants, purge, user_rows

pytestmark = pytest.mark.usefixtures("app_env")


@pytest.fixture
async def short_acs_timeout(monkeypatch):
    monkeypatch.setenv("ACS_TIMEOUT_SECONDS", "1")
    await runtime.reset()


async def token(issuer, user="busy"):
    return await call("issue_token", request("POST", "token", token=issuer.mint(user)))


def assert_retry_later(status, body, headers, expected=(429, 503)):
    assert status in expected, (status, body)
    assert int(headers["Retry-After"]) >= 1
    assert set(body) == {"error"} and body["error"]["code"] in ("throttled", "unavailable")
    text = json.dumps(body).lower()
    for word in ("traceback", "azure", "http", "exception", "acs.", "emulator", "injected"):
        assert word not in text, text


# -- ACS: token issuance for an existing user --------------------------------------------------

async def test_429_with_short_retry_after_is_retried_transparently(issuer, acs):
    assert (await token(issuer))[0] == 200
    acs.set_faults(fault={"operation": "issueAccessToken", "status": 429, "count": 2,
                          "retryAfterSeconds": 1})
    status, body, _ = await token(issuer)
    assert status == 200, body
    assert acs.stats()["faulted"]["issueAccessToken"] == 2


async def test_429_storm_gives_429_after_bounded_retries(issuer, acs):
    assert (await token(issuer))[0] == 200
    acs.set_faults(fault={"operation": "issueAccessToken", "status": 429, "count": 1000,
                          "retryAfterSeconds": 1})
    assert_retry_later(*await token(issuer), expected=(429,))
    assert acs.stats()["faulted"]["issueAccessToken"] == 3  # MAX_ATTEMPTS, then give up
    status, body, headers = await token(issuer)
    assert status == 429 and headers["Retry-After"] == "1"
    acs.clear_faults()
    assert (await token(issuer))[0] == 200


@pytest.mark.parametrize("fault", [
    {"status": 500}, {"status": 503}, {"status": 503, "retryAfterSeconds": 7}, {"mode": "reset"},
    {"mode": "hang"},
], ids=["500", "503", "503-retry-after", "reset", "hang"])
@pytest.mark.usefixtures("short_acs_timeout")
async def test_acs_errors_resets_and_hangs_give_503_then_recover(issuer, acs, fault):
    status, first, _ = await token(issuer)
    assert status == 200
    acs.set_faults(fault={"operation": "issueAccessToken", "count": 1000, **fault})
    status, body, headers = await token(issuer)
    assert_retry_later(status, body, headers, expected=(503,))
    if "retryAfterSeconds" in fault:
        assert headers["Retry-After"] == "7"
    assert acs.stats()["faulted"]["issueAccessToken"] == 3
    acs.clear_faults()
    status, body, _ = await token(issuer)
    assert status == 200 and body["acsUserId"] == first["acsUserId"]
    assert (await invariants(acs)).ok


# -- ACS: first token (createIdentity) -------------------------------------------------------

CREATE_FAULTS = [
    ({"status": 429, "retryAfterSeconds": 30}, 429),
    ({"status": 503}, 503),
    ({"mode": "reset"}, 503),
    ({"mode": "hang"}, 503),
]


@pytest.mark.parametrize(("fault", "expected"), CREATE_FAULTS,
                         ids=["429", "503", "reset", "hang"])
@pytest.mark.usefixtures("short_acs_timeout")
async def test_create_identity_faults_leak_nothing_and_recover(issuer, acs, fault, expected):
    acs.set_faults(fault={"operation": "createIdentity", "count": 1000, **fault})
    assert_retry_later(*await token(issuer, "newcomer"), expected=(expected,))
    report = await invariants(acs)
    assert report.ok and not report.identities and not report.rows, report.summary()
    acs.clear_faults()
    expire_claims()  # see test_a_failed_creation_does_not_lock_the_user_out
    status, body, _ = await token(issuer, "newcomer")
    assert status == 200, body
    report = await invariants(acs, tokens=[(body["token"], True)])
    assert report.ok and len(report.identities) == 1, report.summary()


async def test_a_failed_creation_does_not_lock_the_user_out(issuer, acs):
    acs.set_faults(fault={"operation": "createIdentity", "status": 503, "count": 1000})
    assert_retry_later(*await token(issuer, "locked-out"), expected=(503,))
    acs.clear_faults()
    status, body, _ = await token(issuer, "locked-out")  # the client retries: ACS is back
    assert status == 200, body


# -- ACS: revoke and delete ------------------------------------------------------------------

@pytest.mark.parametrize("fault", [{"mode": "reset"}, {"mode": "hang"}, {"status": 503},
                                   {"status": 429, "retryAfterSeconds": 20}],
                         ids=["reset", "hang", "503", "429"])
@pytest.mark.usefixtures("short_acs_timeout")
async def test_revoke_faults_fail_loudly_and_a_retried_delete_revokes(issuer, acs, fault):
    status, first, _ = await token(issuer, "quitter")
    assert status == 200
    alice = issuer.mint("quitter")
    acs.set_faults(fault={"operation": "revokeAccessTokens", "count": 1000, **fault})
    expected = (429,) if fault.get("status") == 429 else (503,)
    assert_retry_later(*await call("revoke_me", request("POST", "me/revoke", token=alice)),
                       expected=expected)
    assert_retry_later(*await call("delete_me", request("DELETE", "me", token=alice)),
                       expected=expected)
    # The row is marked but the revoke did not happen: the caller was told to retry.
    assert user_rows()["quitter"]["State"] == "deleting"
    assert (await invariants(acs)).ok
    acs.clear_faults()
    status, body, _ = await call("delete_me", request("DELETE", "me", token=alice))
    assert status == 202 and body["state"] == "deleting"
    report = await invariants(acs, tokens=[(first["token"], False)])
    assert report.ok, report.summary()


@pytest.mark.parametrize("fault", [{"mode": "reset"}, {"mode": "hang"}, {"status": 500},
                                   {"status": 429, "retryAfterSeconds": 1}],
                         ids=["reset", "hang", "500", "429"])
@pytest.mark.usefixtures("short_acs_timeout")
async def test_purge_survives_delete_identity_faults_and_finishes_later(issuer, acs, fault):
    users = [f"purgee-{i}" for i in range(3)]
    tokens = []
    for user in users:
        status, body, _ = await token(issuer, user)
        assert status == 200
        tokens.append((body["token"], False))
        status, _, _ = await call("delete_me", request("DELETE", "me", token=issuer.mint(user)))
        assert status == 202
    acs.set_faults(fault={"operation": "deleteIdentity", "count": 1000, **fault})
    await purge()  # must not raise: failures are counted and left for the next run
    report = await invariants(acs, tokens=tokens)
    assert report.ok, report.summary()
    assert len(report.identities) == 3 and {r.state for r in report.rows.values()} == {"purging"}
    acs.clear_faults()
    await purge()
    report = await invariants(acs, tokens=tokens)
    assert report.ok, report.summary()
    assert not report.identities and not report.rows and report.purge_entries == 0


# -- Table Storage: Azurite stopped mid-run and restarted ------------------------------------

@pytest.fixture
async def own_azurite(tmp_path, monkeypatch):
    """A private, on-disk Azurite (so that its data survives a restart on the same port)."""
    from localdev.azurite import AzuriteProcess

    azurite = AzuriteProcess(location=tmp_path / "azurite")
    azurite.start()
    monkeypatch.setenv("IDENTITY_TABLE_CONNECTION", azurite.connection_string)
    await runtime.reset()
    try:
        yield azurite
    finally:
        await runtime.reset()
        azurite.stop()


def stop_gracefully(azurite) -> None:
    """``AzuriteProcess.stop`` sends SIGINT and waits: Azurite saves its on-disk database
    on that graceful close (tests/integration/test_azurite_durability.py)."""
    azurite.stop()


async def wait_healthy(attempts: int = 60) -> None:
    import asyncio

    for _ in range(attempts):
        if (await call("health", request("GET", "health")))[0] == 200:
            return
        await asyncio.sleep(0.25)
    raise AssertionError("the service did not recover after Azurite came back")


async def test_table_storage_outage_gives_503_and_loses_nothing(issuer, acs, own_azurite):
    admin = issuer.mint("root", roles=[ADMIN])
    before = {}
    for user in ("stay-1", "stay-2", "leave"):
        status, body, _ = await token(issuer, user)
        assert status == 200
        before[user] = body["acsUserId"]
    assert (await call("delete_me", request("DELETE", "me", token=issuer.mint("leave"))))[0] == 202
    created = acs.stats()["requests"]["createIdentity"]

    stop_gracefully(own_azurite)
    assert_retry_later(*await token(issuer, "stay-1"), expected=(503,))
    assert_retry_later(*await token(issuer, "newcomer"), expected=(503,))
    assert_retry_later(*await call("get_me", request("GET", "me", token=issuer.mint("stay-1"))),
                       expected=(503,))
    assert_retry_later(*await call("delete_user", request(
        "DELETE", "users/x", token=admin, route_params={"userId": "stay-2"})), expected=(503,))
    assert_retry_later(*await call("health", request("GET", "health")), expected=(503,))
    with pytest.raises(Exception) as failed:  # the timer run fails; the next one retries
        await purge()
    assert type(failed.value).__name__ == "Unavailable"
    assert acs.stats()["requests"]["createIdentity"] == created  # no ACS work without storage

    own_azurite.start()  # same port, same data directory
    await wait_healthy()
    for user in ("stay-1", "stay-2"):
        status, body, _ = await token(issuer, user)
        assert status == 200 and body["acsUserId"] == before[user]
    status, body, _ = await token(issuer, "newcomer")
    assert status == 200
    await purge()
    report = await invariants(acs)
    assert report.ok, report.summary()
    assert set(report.rows) == {"stay-1", "stay-2", "newcomer"}
    assert before["leave"] not in report.identities


async def test_storage_lost_between_create_and_record_discards_the_identity(
        issuer, acs, own_azurite):
    """Azurite dies right after ACS created the identity: the row insert fails, so the
    service deletes the identity again rather than leak it, and says 503."""

    def kill_storage(step: str) -> None:
        if step == "first_token.created":
            stop_gracefully(own_azurite)

    runtime.set_checkpoint(kill_storage)
    assert_retry_later(*await token(issuer, "unlucky"), expected=(503,))
    stats = acs.stats()
    assert stats["identitiesCreated"] == 1 and stats["identities"] == 0
    runtime.set_checkpoint(None)
    own_azurite.start()
    await wait_healthy()
    expire_claims()
    status, body, _ = await token(issuer, "unlucky")
    assert status == 200, body
    report = await invariants(acs)
    assert report.ok and report.identities == [body["acsUserId"]], report.summary()
