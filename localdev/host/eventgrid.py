"""The Event Grid extension's webhook: /runtime/webhooks/eventgrid?functionName=NAME.

Follows ``Microsoft.Azure.WebJobs.Extensions.EventGrid``
(EventGridExtensionConfigProvider + HttpRequestProcessor):

* unknown ``functionName`` (or not an Event Grid trigger) → 404
  ``cannot find function: 'NAME'``;
* ``OPTIONS`` (CloudEvents abuse-protection handshake) → 200 with
  ``WebHook-Allowed-Origin``;
* ``aeg-event-type: SubscriptionValidation`` → 200, ``text/plain; charset=utf-8``,
  ``{"validationResponse":<data.validationCode>}`` (array: first event;
  object: CloudEvent whose ``data`` may be a JSON string);
* ``aeg-event-type: Notification`` → JSON array (one invocation per element,
  all in parallel) or object (one invocation); 202 when all succeed, else 500
  with the exception message;
* ``Unsubscribe`` → 202; any other / missing header → 400;
* unparsable bodies → 500 (an unhandled exception in the extension).

Each event reaches the function through
``azure.functions.eventgrid.EventGridEventInConverter.decode`` — the same
EventGridEvent / CloudEvent objects the worker builds.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from .invocation import InvocationResult
from .loader import FunctionInfo

__all__ = ["decode_event", "handle_eventgrid_webhook"]

log = logging.getLogger("localdev.host.eventgrid")

_ALLOWED_ORIGINS = {
    "eventgrid.azure.net",
    "eventgrid.azure.us",
    "eventgrid.azure.eaglex.ic.gov",
    "eventgrid.azure.microsoft.scloud",
    "eventgrid.azure.cn",
}


def decode_event(event: Any) -> Any:
    """One event (JSON text or parsed JSON) → EventGridEvent / CloudEvent."""
    text = event if isinstance(event, str) else json.dumps(event)
    return EventGridEventInConverter.decode(meta.Datum(text, "json"), trigger_metadata={})


def _validation_code(body: Any) -> str:
    if isinstance(body, list):
        return str(body[0]["data"]["validationCode"])
    if isinstance(body, dict):
        data = body["data"]
        if isinstance(data, str):
            data = json.loads(data)  # double-encoded in the CloudEvent validation event
        return str(data["validationCode"])
    raise ValueError("the request content should be a JSON object or array")


Invoke = Callable[[FunctionInfo, Any, str], Awaitable[InvocationResult]]


async def handle_eventgrid_webhook(
    request: web.Request,
    find_function: Callable[[str], FunctionInfo | None],
    invoke_all: Callable[[FunctionInfo, list[Any]], Awaitable[list[InvocationResult]]],
) -> web.Response:
    # HttpUtility.ParseQueryString is case-insensitive on keys
    name = next((v for k, v in request.query.items() if k.lower() == "functionname"), "")
    fn = find_function(name) if name else None
    if fn is None:
        log.info("cannot find function: '%s'", name)
        return web.Response(status=404, text=f"cannot find function: '{name}'")

    if request.method == "OPTIONS":
        origin = request.headers.get("WebHook-Request-Origin", "eventgrid.azure.net")
        allowed = origin if origin in _ALLOWED_ORIGINS else "eventgrid.azure.net"
        return web.Response(status=200, headers={"WebHook-Allowed-Origin": allowed})

    event_type = request.headers.get("aeg-event-type", "")
    kind = event_type.lower()
    if kind == "subscriptionvalidation":
        try:
            code = _validation_code(json.loads(await request.text()))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            log.error("Event Grid subscription validation failed for %s: %s", fn.name, exc)
            return web.Response(status=500)
        log.info("perform handshake with eventGrid for function: %s", fn.name)
        # HttpRequestProcessor answers with a StringContent (text/plain; charset=utf-8)
        # holding the JSON (Azure/azure-sdk-for-net, sdk/eventgrid/
        # Microsoft.Azure.WebJobs.Extensions.EventGrid/src/TriggerBinding/HttpRequestProcessor.cs).
        return web.Response(
            status=200,
            text=json.dumps({"validationResponse": code}, separators=(",", ":")),
            content_type="text/plain",
            charset="utf-8",
        )

    if kind == "notification":
        try:
            body = json.loads(await request.text())
        except ValueError as exc:
            log.error("Event Grid notification for %s is not valid JSON: %s", fn.name, exc)
            return web.Response(status=500)
        if isinstance(body, dict):
            events = [body]
        elif isinstance(body, list):
            events = body
        else:
            log.error("Event Grid notification for %s is not a JSON object or array", fn.name)
            return web.Response(status=500)
        results = await invoke_all(fn, events)
        for result in results:
            if not result.succeeded:
                return web.Response(
                    status=500,
                    text=f"Exception while executing function: Functions.{fn.name}",
                )
        return web.Response(status=202)

    if kind == "unsubscribe":
        return web.Response(status=202)
    return web.Response(status=400)


def fired_reason(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"EventGrid trigger fired at {now.isoformat()}"
