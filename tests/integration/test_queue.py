"""The delayed-revoke queue adapter (shared/queue.py) against Azurite's queue service.

Put Message's ``visibilitytimeout`` keeps a message invisible for that many seconds,
0 to 7 days (learn.microsoft.com/rest/api/storageservices/put-message); the queue
trigger's default ``messageEncoding`` is base64, so the adapter sends base64 text.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator

import pytest
from azure.storage.queue.aio import QueueClient

from localdev.azurite import AzuriteProcess
from shared import queue
from shared.errors import BadRequest, Unavailable


@pytest.fixture(scope="module")
def full_azurite() -> Iterator[AzuriteProcess]:
    with AzuriteProcess(table_only=False) as process:
        yield process


async def test_revoke_later_creates_the_queue_and_delays_the_message(full_azurite):
    name = "r" + uuid.uuid4().hex[:12]
    scheduler = queue.QueueRevokeScheduler.from_connection_string(
        full_azurite.connection_string, name)
    reader = QueueClient.from_connection_string(full_azurite.connection_string, name)
    try:
        await scheduler.revoke_later("a/b ü", 1.2)  # rounded up to whole seconds: 2
        assert await reader.peek_messages(max_messages=32) == []  # invisible for now
        deadline = time.monotonic() + 10
        while not (found := await reader.peek_messages(max_messages=32)):
            assert time.monotonic() < deadline, "the message never became visible"
            await asyncio.sleep(0.1)
        assert queue.decode(base64.b64decode(found[0].content)) == "a/b ü"
    finally:
        await scheduler.close()
        await reader.close()


async def test_unreachable_queue_storage_is_unavailable():
    with AzuriteProcess(table_only=False) as dead:
        connection = dead.connection_string
    scheduler = queue.QueueRevokeScheduler.from_connection_string(connection, "gone-queue")
    try:
        with pytest.raises(Unavailable):
            await scheduler.revoke_later("alice", 1)
    finally:
        await scheduler.close()


@pytest.mark.parametrize("body", [b"", b"null", b"[]", b'{"userId": 3}', b'{"userId": ""}',
                                  b'{"user": "x"}', b"\xff"])
def test_malformed_messages_are_refused(body):
    with pytest.raises(BadRequest):
        queue.decode(body)


async def test_in_process_fallback_runs_after_the_delay_and_is_cancelled_on_close():
    ran: list[str] = []

    async def run(user_id: str) -> None:
        ran.append(user_id)

    scheduler = queue.InProcessRevokeScheduler(run)
    await scheduler.revoke_later("soon", 0)
    await scheduler.revoke_later("never", 3600)
    deadline = time.monotonic() + 5
    while not ran:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    await scheduler.close()
    assert ran == ["soon"]
