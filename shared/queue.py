"""The delayed revoke after a delete, scheduled durably on an Azure Storage queue.

A delete sends one message with a visibility delay (Put Message's ``visibilitytimeout``:
0 to 7 days, relative to the storage service's clock; learn.microsoft.com/rest/api/
storageservices/put-message); the ``revoke_after_delete`` queue trigger runs when it
becomes visible. The message lives in storage, so the revoke happens even if the
process that scheduled it dies; a failing run is retried by the Functions host and,
after ``maxDequeueCount`` (5) tries, moved to ``<queue>-poison`` for operators.

Messages are base64 text, the queue trigger's default ``messageEncoding``. They carry
the user id (the trigger reads the row), never a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from .errors import BadRequest, Unavailable
from .transport import use_env_settings

#: Put Message refuses a visibility timeout over 7 days.
MAX_DELAY_SECONDS = 7 * 24 * 3600


def _options() -> dict[str, Any]:
    """Bounded like the table client: the storage SDKs' default retry waits 15 s and
    more between tries, which would hold a delete (and its caller) for most of a
    minute when queue storage is down."""
    return {
        # The client's exponential retry, tamed: waits of about 0.3 s and 1.3 s.
        "retry_total": 2,
        "initial_backoff": 0.3,
        "increment_base": 1,
        "random_jitter_range": 0.2,
        "connection_timeout": 3,
        "read_timeout": 10,
        "message_encode_policy": TextBase64EncodePolicy(),
        "use_env_settings": use_env_settings(),
    }


def encode(user_id: str) -> str:
    return json.dumps({"userId": user_id}, separators=(",", ":"))


def decode(body: bytes | str) -> str:
    """The user id in a revoke message; anything else is refused (and never retried:
    the trigger logs and acknowledges it)."""
    try:
        data = json.loads(body)
        user_id = data["userId"]
    except (ValueError, TypeError, KeyError):
        raise BadRequest("not a revoke message") from None
    if not isinstance(user_id, str) or not user_id:
        raise BadRequest("not a revoke message")
    return user_id


class QueueRevokeScheduler:
    """:class:`shared.ports.RevokeScheduler` over one Storage queue (aio SDK)."""

    def __init__(self, client: QueueClient) -> None:
        self._client = client
        self._queue_ready = False

    @classmethod
    def from_connection_string(cls, connection_string: str,
                               queue_name: str) -> QueueRevokeScheduler:
        return cls(QueueClient.from_connection_string(connection_string, queue_name,
                                                      **_options()))

    @classmethod
    def from_service_uri(cls, service_uri: str, queue_name: str,
                         credential: Any) -> QueueRevokeScheduler:
        return cls(QueueClient(service_uri, queue_name, credential=credential, **_options()))

    async def close(self) -> None:
        await self._client.close()

    async def revoke_later(self, user_id: str, delay_seconds: float) -> None:
        delay = min(MAX_DELAY_SECONDS, max(0, math.ceil(delay_seconds)))
        for attempt in range(2):
            try:
                await self._client.send_message(encode(user_id), visibility_timeout=delay)
                return
            except ResourceNotFoundError:
                if attempt:
                    break
                await self._create_queue()
            except (AzureError, OSError, asyncio.TimeoutError):
                raise Unavailable("queue storage is unreachable") from None
        raise Unavailable("queue storage is unreachable")

    async def _create_queue(self) -> None:
        try:
            await self._client.create_queue()
        except ResourceExistsError:
            pass
        except (AzureError, OSError, asyncio.TimeoutError):
            raise Unavailable("queue storage is unreachable") from None


class InProcessRevokeScheduler:
    """The fallback when no queue is configured (local tools and tests that run without
    queue storage): the revoke runs in this process after the delay. Not durable: a
    process that dies first loses it. Azure always has the queue (AzureWebJobsStorage)."""

    def __init__(self, run: Callable[[str], Awaitable[object]]) -> None:
        self._run = run
        self._tasks: set[asyncio.Task[None]] = set()

    async def revoke_later(self, user_id: str, delay_seconds: float) -> None:
        task = asyncio.ensure_future(self._later(user_id, delay_seconds))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _later(self, user_id: str, delay_seconds: float) -> None:
        await asyncio.sleep(delay_seconds)
        with contextlib.suppress(Exception):  # best effort; the purge deletes in any case
            await self._run(user_id)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
