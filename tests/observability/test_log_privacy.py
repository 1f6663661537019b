"""No reversible user id in any log line, with logging configured as in production.

The Python worker sets the root logger to INFO and forwards every record to the host
(azure-functions-python-worker, dispatcher.py ``Dispatcher.dispatch_forever``:
``root_logger.setLevel(logging.INFO)``, ``root_logger.addHandler(AsyncLoggingHandler())``,
whose ``emit`` formats each record). host.json's ``logLevel`` is applied by the host after
the record arrived, never to Python's loggers (Azure/azure-functions-python-worker#248),
so what the SDKs log at INFO leaves the worker. azure-core's HttpLoggingPolicy logs every
request URL at INFO, and a Table Storage URL holds ``PartitionKey='u' + base64url(id)``.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone

import azure.functions as func
import pytest

from tests.calls import FUNCTIONS, call, request
from tests.idforms import found_ids, id_forms

pytestmark = pytest.mark.usefixtures("app_env")


class Forwarder(logging.Handler):
    """What the worker's AsyncLoggingHandler does with a record: format it, send it on."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {self.format(record)}")


@pytest.fixture
def worker_logging(caplog: pytest.LogCaptureFixture):
    """Root logger at INFO with a handler that forwards every record, as in the worker;
    no other logger's level is touched."""
    caplog.set_level(logging.INFO)
    forwarder = Forwarder()
    root = logging.getLogger()
    root.addHandler(forwarder)
    try:
        yield forwarder
    finally:
        root.removeHandler(forwarder)


class Timer:
    past_due = False
    schedule_status: dict = {}  # noqa: RUF012


class Context:
    def __init__(self, invocation_id: str) -> None:
        self.invocation_id = invocation_id
        self.function_name = "fn"
        self.function_directory = "."


def test_id_forms_cover_what_a_table_url_carries():
    """The search is not vacuous: the key form is the one a Table URL holds."""
    forms = id_forms("privacy-user@example.com/ü x")
    assert forms["table key"].startswith("u") and forms["base64url"] in forms["table key"]
    assert forms["percent-encoded"] == "privacy-user%40example.com%2F%C3%BC%20x"
    text = "Request URL: 'http://127.0.0.1/t(PartitionKey='" + forms["table key"] + "')'"
    assert found_ids(text, ["privacy-user@example.com/ü x"])


async def test_no_log_line_holds_a_user_id_in_any_form(issuer, worker_logging):
    ids = [f"privacy-{uuid.uuid4().hex[:8]}@example.com",
           f"ünïcode/{uuid.uuid4().hex[:6]} #1"]
    for n, user_id in enumerate(ids):
        token = issuer.mint(user_id)
        assert (await call("issue_token", request("POST", "token", token=token)))[0] == 200
        assert (await call("issue_token", request("POST", "token", token=token)))[0] == 200
        assert (await call("get_me", request("GET", "me", token=token)))[0] == 200
        assert (await call("revoke_me", request("POST", "me/revoke", token=token)))[0] == 204
        event = func.EventGridEvent(
            id=f"evt-{n}", data={"userId": user_id}, topic="t", subject="users",
            event_type="TokenService.RevokeTokens", event_time=datetime.now(timezone.utc),
            data_version="1")
        await FUNCTIONS["on_user_event"](event=event, context=Context(f"inv-event-{n}"))
        assert (await call("delete_me", request("DELETE", "me", token=token)))[0] == 202
    await FUNCTIONS["purge_deleted_users"](timer=Timer(), context=Context("inv-purge"))

    text = "\n".join(worker_logging.lines)
    assert "event=acs_identity_created" in text  # the capture saw the app's records
    assert "event=user_purged" in text
    assert found_ids(text, ids) == []
