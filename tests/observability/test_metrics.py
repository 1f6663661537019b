"""Log-based metrics and structured events, as Application Insights would receive them.

A short end-to-end flow runs in-process against Azurite, the ACS emulator and the issuer
(``app_env``); ``caplog`` captures the ``acs_token_service`` loggers. Each metric line has
the shape ``metric=<name> value=<n> [invocationId=<id>] key=value ...``
(shared/telemetry.py), which docs/operations.md's KQL queries rely on.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import azure.functions as func
import pytest

from tests.calls import FUNCTIONS, request

pytestmark = pytest.mark.usefixtures("app_env")

METRIC_LOGGER = "acs_token_service.metrics"
_METRIC = re.compile(r"^metric=(?P<name>[a-z_]+) value=(?P<value>-?\d+)(?: (?P<dims>.*))?$")
ADMIN = "TokenService.Admin"


class Context:
    """What the Functions worker passes as ``context`` (the parts the app reads)."""

    def __init__(self, invocation_id: str, name: str = "fn") -> None:
        self.invocation_id = invocation_id
        self.function_name = name
        self.function_directory = "."


class Timer:
    past_due = False
    schedule_status: dict[str, Any] = {}  # noqa: RUF012


def fn(name: str) -> Any:
    return FUNCTIONS[name]


async def http(name: str, req: func.HttpRequest, invocation_id: str = "inv-test"
               ) -> tuple[int, Any, dict[str, str]]:
    response = await fn(name)(req, context=Context(invocation_id, name))
    body = response.get_body()
    return response.status_code, json.loads(body) if body else None, dict(response.headers)


def parse(record: logging.LogRecord) -> tuple[str, int, dict[str, str]]:
    match = _METRIC.match(record.getMessage())
    assert match, record.getMessage()
    dims = dict(pair.split("=", 1) for pair in (match["dims"] or "").split())
    return match["name"], int(match["value"]), dims


class Metrics:
    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog
        self._seen = 0

    def take(self) -> list[tuple[str, int, dict[str, str]]]:
        """The metric lines logged since the last call."""
        records = self._caplog.records[self._seen:]
        self._seen = len(self._caplog.records)
        return [parse(r) for r in records if r.name == METRIC_LOGGER]


@pytest.fixture
def metrics(caplog: pytest.LogCaptureFixture) -> Metrics:
    caplog.set_level(logging.INFO, logger="acs_token_service")
    caplog.set_level(logging.INFO, logger=METRIC_LOGGER)
    return Metrics(caplog)


def names(lines: list[tuple[str, int, dict[str, str]]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for name, value, _ in lines:
        counts[name] += value
    return counts


async def test_metric_lines_of_an_end_to_end_flow(issuer, acs, metrics, monkeypatch, caplog):
    alice = issuer.mint("alice")
    status, first, _ = await http("issue_token", request("POST", "token", token=alice))
    assert status == 200
    lines = metrics.take()
    assert sorted((n, v, d.get("first")) for n, v, d in lines) == [
        ("identities_created", 1, None), ("tokens_issued", 1, "True")]

    status, second, _ = await http("issue_token", request("POST", "token", token=alice))
    assert status == 200
    assert [(n, v, d.get("first")) for n, v, d in metrics.take()] == [
        ("tokens_issued", 1, "False")]

    assert (await http("revoke_me", request("POST", "me/revoke", token=alice)))[0] == 204
    assert [(n, v) for n, v, _ in metrics.take()] == [("revocations", 1)]

    # ACS answers 429 with a Retry-After beyond the retry budget: one line from the ACS
    # adapter (which operation) and one from the HTTP edge (what the caller got).
    acs.set_faults(fault={"operation": "issueAccessToken", "status": 429, "count": 1,
                          "retryAfterSeconds": 20})
    status, body, headers = await http("issue_token", request("POST", "token", token=alice))
    assert (status, headers["Retry-After"]) == (429, "20")
    assert sorted((n, v, tuple(sorted(d.items()))) for n, v, d in metrics.take()) == [
        ("throttled", 1, (("code", "throttled"), ("invocationId", "inv-test"))),
        ("throttled", 1, (("invocationId", "inv-test"), ("operation", "issueAccessToken"))),
    ]

    # ACS keeps failing (503 on every attempt): metric=unavailable at the HTTP edge.
    acs.set_faults(fault={"operation": "issueAccessToken", "status": 503, "count": 3})
    status, body, headers = await http("issue_token", request("POST", "token", token=alice))
    assert status == 503 and "Retry-After" in headers
    assert [(n, v, d["code"]) for n, v, d in metrics.take()] == [("unavailable", 1, "unavailable")]
    acs.clear_faults()

    status, _, _ = await http("delete_me", request("DELETE", "me", token=alice))
    assert status == 202
    assert [(n, v) for n, v, _ in metrics.take()] == [("deletions", 1)]

    # A second user, deleted then restored by an admin, is not purged.
    bob = issuer.mint("bob")
    status, bobs, _ = await http("issue_token", request("POST", "token", token=bob))
    assert status == 200
    assert (await http("delete_me", request("DELETE", "me", token=bob)))[0] == 202
    admin = issuer.mint("root", roles=[ADMIN])
    status, body, _ = await http("restore_user", request(
        "POST", "users/bob/restore", token=admin, route_params={"userId": "bob"}))
    assert status == 200 and body["state"] == "active"
    assert names(metrics.take()) == Counter(
        identities_created=1, tokens_issued=1, deletions=1, restores=1)

    # The purge timer: alice's identity goes (DELETION_GRACE_MINUTES=0), bob's stays.
    await fn("purge_deleted_users")(timer=Timer(), context=Context("inv-purge"))
    assert [(n, v, d["invocationId"]) for n, v, d in metrics.take()] == [
        ("purged", 1, "inv-purge")]
    assert acs.identities() == [bobs["acsUserId"]]

    # A bug (an unexpected exception) is a 500 and metric=failures, naming the endpoint.
    from shared.service import TokenService

    async def broken(self: TokenService, user_id: str) -> Any:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(TokenService, "get_user", broken)
    status, body, _ = await http("get_me", request("GET", "me", token=bob))
    assert status == 500 and body == {
        "error": {"code": "internal_error", "message": "internal error"}}
    assert [(n, v, d["endpoint"]) for n, v, d in metrics.take()] == [("failures", 1, "get_me")]

    # Nothing secret ever reached the log: no ACS or caller token, no key, no raw user id.
    text = caplog.text
    access_key = re.search(r"accesskey=([^;]+)", acs.connection_string, re.IGNORECASE)
    assert access_key
    for secret in (first["token"], second["token"], bobs["token"], alice, bob, admin,
                   access_key[1]):
        assert secret not in text


async def test_teams_exchange_metric(issuer, metrics):
    oid, app = "4e3d2c1b-0a9f-4e8d-b7c6-5a4f3e2d1c0b", "7b6a5f4e-3d2c-4b1a-8f9e-8d7c6b5a4f3e"
    entra = issuer.mint_teams(oid=oid, appid=app)  # GUIDs, as ACS requires
    status, _, _ = await http("exchange_teams_token", request(
        "POST", "token/teams", token=issuer.mint(oid),
        body={"token": entra, "appId": app, "userId": oid}))
    assert status == 200
    assert [(n, v) for n, v, _ in metrics.take()] == [("teams_tokens_issued", 1)]


async def test_structured_lines_carry_the_invocation_id(issuer, caplog):
    """Every event= and metric= line logged while an invocation runs names it; user ids
    appear only as the one-way ``user`` reference."""
    from shared import telemetry

    caplog.set_level(logging.INFO, logger="acs_token_service")
    token = issuer.mint("carol")
    assert (await http("issue_token", request("POST", "token", token=token), "inv-1"))[0] == 200
    event = func.EventGridEvent(
        id="evt-1", data={"userId": "carol"}, topic="t", subject="users/carol",
        event_type="TokenService.RevokeTokens", event_time=datetime.now(timezone.utc),
        data_version="1")
    await fn("on_user_event")(event=event, context=Context("inv-2"))
    assert (await http("delete_me", request("DELETE", "me", token=token), "inv-3"))[0] == 202
    await fn("purge_deleted_users")(timer=Timer(), context=Context("inv-4"))

    structured = [r.getMessage() for r in caplog.records
                  if r.name.startswith("acs_token_service")
                  and r.getMessage().startswith(("event=", "metric="))]
    by_invocation: dict[str | None, list[str]] = {}
    for line in structured:
        match = re.search(r" invocationId=(\S+)", line)
        by_invocation.setdefault(match[1] if match else None, []).append(line)
    assert None not in by_invocation, by_invocation.get(None)
    assert set(by_invocation) == {"inv-1", "inv-2", "inv-3", "inv-4"}
    assert any(line.startswith("event=acs_identity_created") for line in by_invocation["inv-1"])
    assert [line.split()[0] for line in by_invocation["inv-2"]] == ["metric=revocations"]
    assert [line.split()[0] for line in by_invocation["inv-3"]] == ["metric=deletions"]
    assert any(line.startswith("event=purge_run") for line in by_invocation["inv-4"])
    assert any(line.startswith("event=user_purged") for line in by_invocation["inv-4"])
    ref = telemetry.user_ref("carol")
    assert any(f"user={ref}" in line for line in structured)
    assert "carol" not in caplog.text.replace(ref, "")
