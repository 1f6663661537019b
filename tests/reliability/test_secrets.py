"""No secret reaches a log line: every record of a full end-to-end run is captured (in
process with the root logger at INFO, as the Functions worker sets it, and the output of
localdev.host serving the app over HTTP) and searched for every ACS token, caller JWT,
Entra token, access key and connection string the run handled, and for every user id in
each form it can be read back from: raw, base64url (Table keys in SDK request URLs) and
percent-encoded (tests/idforms.py)."""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import quote

import pytest

from localdev.azurite import DEV_KEY
from shared import runtime
from tests.calls import call, request
from tests.idforms import found_ids
from tests.reliability.conftest import start_host
from tests.reliability.support import ADMIN, bearer, purge, send

#: Long enough that each of their encodings is worth searching for; unreserved characters
#: only, so that each one's admin path form is the id itself.
ALICE = "alice-secrets-7f3c9e2a"
ROOT = "root-admin-secrets-51d0"


class Secrets:
    """Everything that must never be logged; JWT-like values also by signature alone."""

    def __init__(self, *values: str) -> None:
        self.values: set[str] = set()
        for value in values:
            self.add(value)

    def add(self, value: str) -> str:
        if value:
            self.values.add(value)
            if value.count(".") == 2:
                self.values.add(value.rsplit(".", 1)[1])
        return value

    def add_connection_string(self, connection_string: str) -> None:
        self.add(connection_string)
        for part in connection_string.split(";"):
            name, _, value = part.partition("=")
            if name.strip().lower() in ("accesskey", "accountkey", "sharedaccesssignature"):
                self.add(value.strip())

    def found_in(self, text: str) -> list[str]:
        return sorted(f"{value[:12]}... ({len(value)} chars)" for value in self.values
                      if len(value) >= 16 and value in text)


# Entra ids are GUIDs; ACS refuses others with 400 "Provided AppId has invalid format."
# (Azure/azure-sdk-for-python .../recordings/test_communication_identity_client.pyTestClient
# test_get_token_for_teams_user_with_invalid_client_id[invalid_client_id-invalid].json).
TEAMS_OID = "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d"
TEAMS_APP = "3b4c5d6e-7f8a-4b9c-8d1e-2f3a4b5c6d7e"

def collect_tokens(secrets: Secrets, body) -> None:
    if isinstance(body, dict) and isinstance(body.get("token"), str):
        secrets.add(body["token"])


async def test_in_process_logs_hold_no_secret(issuer, acs, app_env, caplog, monkeypatch):
    # The Functions worker sets the root logger to INFO and forwards every record
    # (azure-functions-python-worker, dispatcher.py Dispatcher.dispatch_forever); no other
    # logger's level is set here, so the SDKs log whatever the app lets them log.
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("ACS_TIMEOUT_SECONDS", "1")
    await runtime.reset()
    secrets = Secrets(DEV_KEY)
    secrets.add_connection_string(acs.connection_string)
    secrets.add_connection_string(app_env["IDENTITY_TABLE_CONNECTION"])
    alice = secrets.add(issuer.mint(ALICE))
    admin = secrets.add(issuer.mint(ROOT, roles=[ADMIN]))
    teams = secrets.add(issuer.mint(TEAMS_OID))
    entra = secrets.add(issuer.mint_teams(oid=TEAMS_OID, appid=TEAMS_APP))

    async def run(name, method, path, token=None, body=None, user=None):
        result = await call(name, request(method, path, token=token, body=body,
                                          route_params={"userId": user} if user else None))
        collect_tokens(secrets, result[1])
        return result

    assert (await run("issue_token", "POST", "token", alice))[0] == 200
    assert (await run("issue_token", "POST", "token", alice, {"scopes": ["chat"]}))[0] == 200
    assert (await run("exchange_teams_token", "POST", "token/teams", teams,
                      {"token": entra, "appId": TEAMS_APP, "userId": TEAMS_OID}))[0] == 200
    assert (await run("exchange_teams_token", "POST", "token/teams", teams,
                      {"token": entra, "appId": "wrong", "userId": TEAMS_OID}))[0] == 400
    assert (await run("get_me", "GET", "me", alice))[0] == 200
    assert (await run("revoke_me", "POST", "me/revoke", alice))[0] == 204
    acs.set_faults(fault={"operation": "issueAccessToken", "status": 429, "count": 3,
                          "retryAfterSeconds": 9})
    assert (await run("issue_token", "POST", "token", alice))[0] == 429
    acs.clear_faults()
    acs.set_faults(fault={"operation": "*", "mode": "reset", "count": 3})
    assert (await run("issue_token", "POST", "token", alice))[0] == 503
    acs.clear_faults()
    bad = secrets.add(alice[:-6] + "AAAAAA")  # a tampered token is still someone's token
    assert (await run("issue_token", "POST", "token", bad))[0] == 401
    assert (await run("get_user", "GET", "users/x", alice, user=ALICE))[0] == 403
    assert (await run("delete_user", "DELETE", "users/x", admin, user=ALICE))[0] == 202
    assert (await run("restore_user", "POST", "users/x/restore", admin, user=ALICE))[0] == 200
    assert (await run("issue_token", "POST", "token", alice))[0] == 200
    assert (await run("delete_me", "DELETE", "me", alice))[0] == 202
    await purge()
    assert (await run("health", "GET", "health"))[0] == 200
    text = caplog.text + "\n".join(str(r.__dict__) for r in caplog.records)
    assert "event=acs_identity_created" in text  # the capture really saw the app's lines
    assert secrets.found_in(text) == []
    assert found_ids(text, [ALICE, ROOT]) == []
    assert len(secrets.values) > 10


@pytest.mark.usefixtures("acs")
def test_host_output_holds_no_secret(azurite, issuer, acs):
    acs.reset()
    host = start_host(azurite, issuer, acs, log_level="DEBUG", DELETION_GRACE_MINUTES="0")
    try:
        secrets = Secrets(DEV_KEY, host.master_key, host.function_key)
        secrets.add_connection_string(acs.connection_string)
        secrets.add_connection_string(azurite.connection_string)
        alice = secrets.add(issuer.mint(ALICE))
        admin = secrets.add(issuer.mint(ROOT, roles=[ADMIN]))
        teams = secrets.add(issuer.mint(TEAMS_OID))
        entra = secrets.add(issuer.mint_teams(oid=TEAMS_OID, appid=TEAMS_APP))

        def run(method, path, token=None, body=None):
            raw = None if body is None else json.dumps(body).encode()
            status, payload, _ = send(host, method, path, body=raw,
                                      headers=bearer(token) if token else None)
            collect_tokens(secrets, payload)
            return status

        assert run("POST", "/api/token", alice) == 200
        assert run("POST", "/api/token", alice, {"expiresInMinutes": 60}) == 200
        assert run("POST", "/api/token/teams", teams,
                   {"token": entra, "appId": TEAMS_APP, "userId": TEAMS_OID}) == 200
        assert run("POST", "/api/me/revoke", alice) == 204
        acs.set_faults(fault={"operation": "issueAccessToken", "status": 503, "count": 3})
        assert run("POST", "/api/token", alice) == 503
        acs.clear_faults()
        assert run("POST", "/api/token", secrets.add(alice[:-6] + "AAAAAA")) == 401
        assert run("DELETE", "/api/users/" + quote(ALICE), admin) == 202
        assert run("POST", f"/api/users/{ALICE}/restore", admin) == 200
        assert run("DELETE", "/api/me", alice) == 202
        status, _, _ = send(host, "POST", "/admin/functions/purge_deleted_users", body=b"{}",
                            headers={"x-functions-key": host.master_key})
        assert status in (200, 202)
        assert run("GET", "/api/health") == 200
    finally:
        host.stop()
        text = host.log_text()
        host.cleanup()
    assert re.search(r"acs_identity_created|issue_token", text), text[-2000:]
    assert secrets.found_in(text) == []
    assert found_ids(text, [ALICE, ROOT]) == []
