"""Lifecycle events delivered to the Event Grid webhook revoke (or delete) through the app."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

from tests.revoke_clock import leave_revoke_second

from .helpers import StackClient


def event_grid_event(event_type: str, user: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.EventGrid/topics/users",
        "subject": f"users/{user}",
        "eventType": event_type,
        "eventTime": datetime.now(timezone.utc).isoformat(),
        "dataVersion": "1.0",
        "data": {"userId": user},
    }


def cloud_event(event_type: str, user: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/token-service/e2e",
        "type": event_type,
        "time": datetime.now(timezone.utc).isoformat(),
        "subject": f"users/{user}",
        "datacontenttype": "application/json",
        "data": {"userId": user},
    }


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda u: [event_grid_event("TokenService.RevokeTokens", u)],
                     id="event-grid-schema-array"),
        pytest.param(lambda u: cloud_event("TokenService.RevokeTokens", u), id="cloudevent"),
        pytest.param(lambda u: [cloud_event("TokenService.RevokeTokens", u)],
                     id="cloudevent-array"),
    ],
)
def test_revoke_event_invalidates_earlier_tokens(client: StackClient, payload: Any) -> None:
    user, bearer = client.new_user()
    before = client.issue(bearer)
    assert client.validate(before["token"])["valid"] is True

    resp = client.post_events(payload(user))
    assert resp.status == 202, resp.body

    check = client.validate(before["token"])
    assert check == {"valid": False, "reason": "revoked", "identity": before["acsUserId"]}
    leave_revoke_second()  # a same-second token's fate on Azure is unknown
    after = client.issue(bearer)
    assert after["acsUserId"] == before["acsUserId"]
    assert client.validate(after["token"])["valid"] is True


def test_graph_user_deleted_event_deletes_the_user(client: StackClient) -> None:
    """A Microsoft Graph change notification names the user in data.resourceData.id."""
    user, bearer = client.new_user()
    issued = client.issue(bearer)
    event = event_grid_event("Microsoft.Graph.UserDeleted", user)
    event["data"] = {"resourceData": {"id": user}, "changeType": "deleted"}
    assert client.post_events([event]).status == 202

    assert client.validate(issued["token"])["valid"] is False
    me = client.call("GET", "/me", bearer)
    assert me.status == 200
    assert me.json()["state"] == "deleting"
    assert client.call("POST", "/token", bearer).status == 410


def test_events_for_unknown_users_and_types_are_acknowledged(client: StackClient) -> None:
    resp = client.post_events([
        event_grid_event("TokenService.RevokeTokens", "nobody-" + uuid.uuid4().hex[:8]),
        event_grid_event("Some.Other.Event", "whoever"),
    ])
    assert resp.status == 202, resp.body


def test_subscription_validation_handshake(client: StackClient) -> None:
    code = str(uuid.uuid4())
    event = event_grid_event("Microsoft.EventGrid.SubscriptionValidationEvent", "x")
    event["data"] = {"validationCode": code}
    from .helpers import http

    resp = http(
        "POST",
        client.stack.base_url + "/runtime/webhooks/eventgrid?functionName=on_user_event",
        body=[event],
        headers={"aeg-event-type": "SubscriptionValidation"},
    )
    assert resp.status == 200
    assert resp.json() == {"validationResponse": code}
