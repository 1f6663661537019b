"""Queue triggers in localdev.host, against a full Azurite (blob, queue, table).

The semantics are the Functions host's queue listener (azure-webjobs-sdk QueueProcessor;
QueuesOptions, azuresdkdocs .../Microsoft.Azure.WebJobs.Extensions.Storage.Queues/5.3.3):
a message is invisible until its Put Message ``visibilitytimeout`` has passed
(learn.microsoft.com/rest/api/storageservices/put-message); success deletes it; a
failure makes it visible again after ``visibilityTimeout``; once its dequeue count
reaches ``maxDequeueCount`` (default 5) it is moved to ``<queue>-poison``
(azure-webjobs-sdk issue 2624: "If Message dequeue count exceeds 5, message is moved to
poison queue").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from localdev.azurite import AzuriteProcess
from localdev.host import create_host_app, get_runtime
from localdev.host.queues import QueueOptions

received: list[tuple[str, int]] = []


def make_app() -> func.FunctionApp:
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE%", connection="WorkStorage")
    async def work(msg: func.QueueMessage) -> None:
        body = msg.get_body().decode()
        received.append((body, int(msg.dequeue_count or 0)))
        if body.startswith("fail"):
            raise RuntimeError("this message always fails")

    return app


@pytest.fixture(scope="module")
def full_azurite() -> Iterator[AzuriteProcess]:
    with AzuriteProcess(table_only=False) as process:
        yield process


@pytest_asyncio.fixture
async def queue_host(full_azurite: AzuriteProcess,
                     tmp_path: Path) -> AsyncIterator[tuple[Any, str]]:
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0", "extensions": {"queues": {
        "maxPollingInterval": "00:00:00.200", "visibilityTimeout": "00:00:00"}}}))
    queue = "q" + uuid.uuid4().hex[:12]
    env = {"WORK_QUEUE": queue, "WorkStorage": full_azurite.connection_string}
    received.clear()
    app = create_host_app(make_app(), environ=env, function_directory=tmp_path)
    async with TestClient(TestServer(app)) as client:
        from azure.storage.queue import TextBase64EncodePolicy
        from azure.storage.queue.aio import QueueClient

        sender = QueueClient.from_connection_string(
            full_azurite.connection_string, queue, message_encode_policy=TextBase64EncodePolicy())
        async with sender:
            # The producer makes sure its queue exists, as shared/queue.py does: the
            # listener creates it too, but in its own task, which may not have run yet.
            from azure.core.exceptions import ResourceExistsError

            with contextlib.suppress(ResourceExistsError):
                await sender.create_queue()
            yield client, sender


async def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_message_runs_once_after_its_visibility_delay_and_is_deleted(queue_host):
    client, sender = queue_host
    await sender.send_message("later", visibility_timeout=2)
    await sender.send_message("now")
    await wait_until(lambda: ("now", 1) in received, 10, "the visible message")
    assert ("later", 1) not in received  # still invisible (2 s delay)
    await wait_until(lambda: ("later", 1) in received, 10, "the delayed message")
    await asyncio.sleep(0.5)
    assert received == [("now", 1), ("later", 1)]  # succeeded: deleted, not run again
    assert await sender.peek_messages(max_messages=32) == []


async def test_failing_message_is_retried_then_moved_to_poison_after_five_tries(queue_host):
    client, sender = queue_host
    await sender.send_message("fail-always")
    await wait_until(lambda: len(received) >= 5, 20, "five tries")
    tries = [("fail-always", n) for n in range(1, 6)]  # dequeue counts 1..5
    assert received == tries

    from azure.storage.queue import TextBase64DecodePolicy
    from azure.storage.queue.aio import QueueClient

    poison = QueueClient.from_connection_string(
        get_runtime(client.server.app).queues.targets[0][2],
        sender.queue_name + "-poison", message_decode_policy=TextBase64DecodePolicy())
    async with poison:
        async def moved() -> list[Any]:
            return [m.content for m in await poison.peek_messages(max_messages=32)]

        deadline = time.monotonic() + 10
        while (found := await moved()) != ["fail-always"]:
            assert time.monotonic() < deadline, found
            await asyncio.sleep(0.1)
    assert await sender.peek_messages(max_messages=32) == []


def test_options_follow_host_json_with_the_host_defaults():
    defaults = QueueOptions({})
    assert (defaults.max_polling, defaults.visibility_timeout, defaults.max_dequeue_count,
            defaults.batch_size, defaults.base64) == (60.0, 0.0, 5, 16, True)
    ours = QueueOptions(json.loads((Path(__file__).parents[2] / "host.json").read_text()))
    assert ours.max_polling == 2.0 and ours.max_dequeue_count == 5


def test_unresolvable_queue_name_leaves_that_function_unstarted(tmp_path: Path) -> None:
    app = create_host_app(make_app(), environ={}, function_directory=tmp_path)
    assert get_runtime(app).queues.targets == []
