"""The Event Grid webhook, like the Event Grid extension behind the host."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

from aiohttp.test_utils import TestClient

Client = TestClient[Any, Any]
URL = "/runtime/webhooks/eventgrid"
NOTIFY = {"aeg-event-type": "Notification", "Content-Type": "application/json"}


def eg_event(i: int, subject: str = "/blobs/x") -> dict[str, Any]:
    return {
        "id": f"id-{i}",
        "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a",
        "subject": subject,
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2024-05-01T12:34:56.789Z",
        "data": {"n": i, "url": f"https://a/x{i}"},
        "dataVersion": "1.0",
    }


async def test_event_grid_schema_array_invokes_once_per_event(
    client: Client, sample_state: ModuleType
) -> None:
    resp = await client.post(
        URL,
        params={"functionName": "eg_handler"},
        data=json.dumps([eg_event(1), eg_event(2)]),
        headers=NOTIFY,
    )
    assert resp.status == 202
    assert await resp.read() == b""
    events = sorted(sample_state.EVENTS, key=lambda e: str(e["id"]))
    assert len(events) == 2
    for i, ev in enumerate(events, start=1):
        assert ev["cls"] == "EventGridEvent"
        assert ev["id"] == f"id-{i}"
        assert ev["event_type"] == "Microsoft.Storage.BlobCreated"
        assert ev["subject"] == "/blobs/x"
        assert ev["data"] == {"n": i, "url": f"https://a/x{i}"}
        assert ev["data_version"] == "1.0"
        assert str(ev["event_time"]).startswith("2024-05-01T12:34:56.789")


async def test_cloud_event_object(client: Client, sample_state: ModuleType) -> None:
    cloud = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "/my/source",
        "type": "com.example.thing.happened",
        "subject": "thing/1",
        "time": "2024-05-01T00:00:00Z",
        "datacontenttype": "application/json",
        "data": {"k": "v"},
    }
    resp = await client.post(
        URL, params={"functionName": "eg_handler"}, data=json.dumps(cloud), headers=NOTIFY
    )
    assert resp.status == 202
    assert sample_state.EVENTS == [
        {
            "cls": "CloudEvent",
            "id": "ce-1",
            "type": "com.example.thing.happened",
            "source": "/my/source",
            "subject": "thing/1",
            "data": {"k": "v"},
            "specversion": "1.0",
        }
    ]


async def test_array_of_cloud_events(client: Client, sample_state: ModuleType) -> None:
    batch = [
        {"specversion": "1.0", "id": f"c{i}", "source": "/s", "type": "t", "data": i}
        for i in range(3)
    ]
    resp = await client.post(
        URL, params={"functionName": "eg_handler"}, data=json.dumps(batch), headers=NOTIFY
    )
    assert resp.status == 202
    assert sorted(e["data"] for e in sample_state.EVENTS) == [0, 1, 2]  # type: ignore[type-var]
    assert {e["cls"] for e in sample_state.EVENTS} == {"CloudEvent"}


async def test_subscription_validation_handshake(client: Client, sample_state: ModuleType) -> None:
    body = [
        {
            "id": "v1",
            "topic": "/t",
            "subject": "",
            "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": "2024-05-01T00:00:00Z",
            "dataVersion": "1",
        }
    ]
    resp = await client.post(
        URL,
        params={"functionName": "eg_handler"},
        data=json.dumps(body),
        headers={"aeg-event-type": "SubscriptionValidation"},
    )
    assert resp.status == 200
    # The extension answers with StringContent: text/plain, the JSON as text
    # (Microsoft.Azure.WebJobs.Extensions.EventGrid HttpRequestProcessor.cs).
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert await resp.text() == '{"validationResponse":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}'
    assert sample_state.EVENTS == []  # the function is not invoked


async def test_cloudevents_options_handshake(client: Client) -> None:
    resp = await client.options(
        URL,
        params={"functionName": "eg_handler"},
        headers={"WebHook-Request-Origin": "eventgrid.azure.net"},
    )
    assert resp.status == 200
    assert resp.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


async def test_header_value_is_case_insensitive(client: Client, sample_state: ModuleType) -> None:
    resp = await client.post(
        URL,
        params={"functionname": "EG_HANDLER"},
        data=json.dumps([eg_event(7)]),
        headers={"aeg-event-type": "notification"},
    )
    assert resp.status == 202
    assert [e["id"] for e in sample_state.EVENTS] == ["id-7"]


async def test_bad_or_missing_event_type_is_400(client: Client, sample_state: ModuleType) -> None:
    for headers in ({"aeg-event-type": "Bogus"}, {}):
        resp = await client.post(
            URL,
            params={"functionName": "eg_handler"},
            data=json.dumps([eg_event(1)]),
            headers=headers,
        )
        assert resp.status == 400
    assert sample_state.EVENTS == []


async def test_unsubscribe_is_202(client: Client) -> None:
    resp = await client.post(
        URL,
        params={"functionName": "eg_handler"},
        data="[]",
        headers={"aeg-event-type": "Unsubscribe"},
    )
    assert resp.status == 202


async def test_unknown_function_is_404(client: Client) -> None:
    for name in ("nope", "hello", "timer_fn"):  # unknown, HTTP, timer
        resp = await client.post(
            URL, params={"functionName": name}, data=json.dumps([eg_event(1)]), headers=NOTIFY
        )
        assert resp.status == 404
        assert await resp.text() == f"cannot find function: '{name}'"
    resp = await client.post(URL, data="[]", headers=NOTIFY)
    assert resp.status == 404


async def test_failure_is_500_after_all_events_ran(
    client: Client, sample_state: ModuleType
) -> None:
    resp = await client.post(
        URL,
        params={"functionName": "eg_handler"},
        data=json.dumps([eg_event(1), eg_event(2, subject="fail"), eg_event(3)]),
        headers=NOTIFY,
    )
    assert resp.status == 500
    text = await resp.text()
    assert text == "Exception while executing function: Functions.eg_handler"
    assert "event handler failure" not in text
    assert sorted(str(e["id"]) for e in sample_state.EVENTS) == ["id-1", "id-2", "id-3"]


async def test_invalid_json_is_500(client: Client) -> None:
    resp = await client.post(
        URL, params={"functionName": "eg_handler"}, data="{not json", headers=NOTIFY
    )
    assert resp.status == 500


async def test_no_key_needed_locally(client: Client, sample_state: ModuleType) -> None:
    # The Functions host wants ?code=<eventgrid_extension system key>; Core Tools does not.
    resp = await client.post(
        URL,
        params={"functionName": "eg_handler", "code": "whatever"},
        data=json.dumps([eg_event(5)]),
        headers=NOTIFY,
    )
    assert resp.status == 202
