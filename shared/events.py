"""Lifecycle events (Event Grid schema or CloudEvents 1.0) reduced to a ``UserEvent``.

Our own events carry ``data.userId``. Microsoft Graph user events carry the Entra object
id in ``data.resourceData.id`` (or the subject ``Users/<id>``), which is the value of the
caller's ``oid`` claim, so HTTP calls and events agree on who a user is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import BadRequest
from .keys import validate_user_id
from .models import EventAction, UserEvent


class UnknownEvent(BadRequest):
    """An event type we are not configured to act on."""

    code = "unknown_event"


def parse_event(event: Any, actions: Mapping[str, EventAction]) -> UserEvent:
    """Accepts ``func.EventGridEvent`` (``event_type``) or ``func.CloudEvent`` (``type``)."""
    event_type = getattr(event, "event_type", None) or getattr(event, "type", None)
    if not isinstance(event_type, str) or not event_type:
        raise BadRequest("the event has no type")
    action = actions.get(event_type)
    if action is None:
        raise UnknownEvent(f"event type '{event_type[:100]}' is not configured")
    try:
        data = event.get_json()
    except ValueError:
        raise BadRequest("the event data is not JSON") from None
    user_id = _user_id(data, getattr(event, "subject", None))
    if user_id is None:
        raise BadRequest("the event names no user")
    return UserEvent(action, validate_user_id(user_id), event_type, str(getattr(event, "id", "")))


def _user_id(data: Any, subject: Any) -> str | None:
    if isinstance(data, Mapping):
        user_id = data.get("userId")
        if isinstance(user_id, str) and user_id:
            return user_id
        resource = data.get("resourceData")
        if isinstance(resource, Mapping) and isinstance(resource.get("id"), str):
            return str(resource["id"]) or None
    if isinstance(subject, str) and subject.lower().startswith("users/"):
        return subject[6:].strip("/") or None
    return None
