"""Queue triggers: Azure Storage queues polled the way the Functions host's queue
listener does (Microsoft.Azure.WebJobs.Extensions.Storage.Queues, ``QueuesOptions``):

* ``queueName`` may be a ``%SETTING%`` expression; ``connection`` (default
  ``AzureWebJobsStorage``) names a connection-string app setting. A function whose
  queue or connection cannot be resolved is not started (logged), like the host's
  per-function indexing errors; the other functions run;
* polling backs off exponentially while the queue is empty, from 100 ms up to
  ``extensions.queues.maxPollingInterval`` (host.json; default one minute), and polls
  again at once after finding messages;
* each message is fetched invisible for 10 minutes while it runs (the host's initial
  visibility timeout; azure-webjobs-sdk issue 1040), deleted when the function
  succeeds; on failure it becomes visible again after ``visibilityTimeout`` (default 0),
  unless its dequeue count has reached ``maxDequeueCount`` (default 5): then it is
  copied to ``<queue>-poison`` and deleted (QueueProcessor in azure-webjobs-sdk);
* ``messageEncoding`` (default ``base64``) is decoded before the function sees the body;
  ``batchSize`` (default 16) messages are fetched and run concurrently.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from azure.functions import meta

from .loader import FunctionInfo
from .ncrontab import resolve_setting_expression

__all__ = ["QueueListeners", "QueueOptions"]

log = logging.getLogger("localdev.host.queues")
#: How long a fetched message stays invisible while its function runs.
PROCESSING_VISIBILITY_SECONDS = 600
MIN_POLLING_SECONDS = 0.1
Invoke = Callable[[FunctionInfo, Any, str], Awaitable[Any]]


def _timespan(raw: Any, default: float) -> float:
    """host.json time spans: "hh:mm:ss(.fff)" or, as in v1, milliseconds."""
    if raw is None:
        return default
    if isinstance(raw, (int, float)):
        return float(raw) / 1000.0
    match = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)", str(raw).strip())
    if not match:
        raise ValueError(f"not a time span: {raw!r}")
    days, hours, minutes, seconds = match.groups()
    return (int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60
            + float(seconds))


class QueueOptions:
    """``extensions.queues`` of host.json, with the host's defaults."""

    def __init__(self, host_json: Mapping[str, Any] | None = None) -> None:
        raw = ((host_json or {}).get("extensions") or {}).get("queues") or {}
        self.max_polling = max(MIN_POLLING_SECONDS, _timespan(raw.get("maxPollingInterval"), 60.0))
        self.visibility_timeout = _timespan(raw.get("visibilityTimeout"), 0.0)
        self.max_dequeue_count = int(raw.get("maxDequeueCount", 5))
        self.batch_size = max(1, min(32, int(raw.get("batchSize", 16))))
        self.base64 = str(raw.get("messageEncoding", "base64")).lower() == "base64"


class QueueListeners:
    """One polling loop per enabled queue-triggered function."""

    def __init__(self, functions: list[FunctionInfo], invoke: Invoke, *,
                 environ: Mapping[str, str] | None = None,
                 host_json: Mapping[str, Any] | None = None) -> None:
        self.options = QueueOptions(host_json)
        self._invoke = invoke
        self._env = os.environ if environ is None else environ
        self._tasks: list[asyncio.Task[None]] = []
        self.targets: list[tuple[FunctionInfo, str, str]] = []
        for fn in functions:
            if fn.trigger_type.lower() != "queuetrigger" or fn.disabled:
                continue
            try:
                queue = resolve_setting_expression(str(fn.trigger.get("queueName", "")), self._env)
                setting = str(fn.trigger.get("connection") or "AzureWebJobsStorage")
                connection = self._env.get(setting, "")
                if "queueendpoint=" not in connection.lower().replace(" ", "") and (
                        "usedevelopmentstorage=true" not in connection.lower()):
                    raise ValueError(f"app setting '{setting}' has no queue endpoint")
            except ValueError as exc:
                log.error("Function %s (queueTrigger) is not started: %s", fn.name, exc)
                continue
            self.targets.append((fn, queue, connection))

    def start(self) -> None:
        for fn, queue, connection in self.targets:
            log.info("Function %s: queueTrigger on queue '%s'", fn.name, queue)
            self._tasks.append(asyncio.ensure_future(self._listen(fn, queue, connection)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _listen(self, fn: FunctionInfo, queue: str, connection: str) -> None:
        from azure.core.exceptions import AzureError, ResourceExistsError
        from azure.storage.queue.aio import QueueClient

        client = QueueClient.from_connection_string(connection, queue)
        poison = QueueClient.from_connection_string(connection, f"{queue}-poison")
        interval = MIN_POLLING_SECONDS
        try:
            with contextlib.suppress(ResourceExistsError):
                await client.create_queue()
            while True:
                try:
                    batch = [m async for m in client.receive_messages(
                        messages_per_page=self.options.batch_size,
                        max_messages=self.options.batch_size,
                        visibility_timeout=PROCESSING_VISIBILITY_SECONDS)]
                except (AzureError, OSError) as exc:
                    log.warning("polling queue '%s' failed: %s", queue, type(exc).__name__)
                    batch = []
                if not batch:
                    await asyncio.sleep(interval)
                    interval = min(interval * 2, self.options.max_polling)
                    continue
                interval = MIN_POLLING_SECONDS
                await asyncio.gather(*(self._process(fn, queue, client, poison, m)
                                       for m in batch))
        finally:
            await client.close()
            await poison.close()

    async def _process(self, fn: FunctionInfo, queue: str, client: Any, poison: Any,
                       message: Any) -> None:
        from azure.core.exceptions import AzureError, ResourceExistsError

        try:
            value = self._bind(fn, message)
        except (ValueError, binascii.Error) as exc:
            log.error("queue message %s for %s could not be bound: %s", message.id, fn.name, exc)
            value, failed = None, True
        else:
            result = await self._invoke(fn, value, f"New queue message detected on '{queue}'.")
            failed = result.error is not None
        try:
            if not failed:
                await client.delete_message(message)
            elif message.dequeue_count >= self.options.max_dequeue_count:
                log.warning("Message %s has reached MaxDequeueCount of %d. Moving message to "
                            "queue '%s-poison'.", message.id, self.options.max_dequeue_count,
                            queue)
                with contextlib.suppress(ResourceExistsError):
                    await poison.create_queue()
                await poison.send_message(message.content)
                await client.delete_message(message)
            else:
                await client.update_message(
                    message, visibility_timeout=int(self.options.visibility_timeout))
        except (AzureError, OSError) as exc:
            # The message reappears when its processing visibility runs out.
            log.warning("queue message %s could not be settled: %s", message.id,
                        type(exc).__name__)

    def _bind(self, fn: FunctionInfo, message: Any) -> Any:
        """The worker's own QueueMessage, built by the worker's converter from the
        body and the trigger metadata the host sends."""
        raw = message.content if isinstance(message.content, str) else str(message.content)
        body = base64.b64decode(raw, validate=True) if self.options.base64 else raw.encode()
        converter: Any = meta._ConverterMeta._bindings.get(fn.trigger_type)

        def when(value: dt.datetime | None) -> meta.Datum:
            return meta.Datum(value.isoformat() if value else "", "string")

        metadata = {
            "Id": meta.Datum(message.id, "string"),
            "DequeueCount": meta.Datum(str(message.dequeue_count), "string"),
            "ExpirationTime": when(message.expires_on),
            "InsertionTime": when(message.inserted_on),
            "NextVisibleTime": when(message.next_visible_on),
            "PopReceipt": meta.Datum(message.pop_receipt, "string"),
        }
        return converter.decode(meta.Datum(body, "bytes"), trigger_metadata=metadata)
