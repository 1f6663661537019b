"""Every form in which a user id can be read back out of a log line.

A Table Storage URL carries ``PartitionKey='u' + base64url(id)`` (shared/keys.py), an
admin path carries the id percent-encoded or as ``b64.`` + base64url, and a query string
may carry it form-encoded: each of these gives the id back as surely as the raw id.
"""

from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

from shared.keys import user_key


def id_forms(user_id: str) -> dict[str, str]:
    """The id's reversible encodings by name (the ones at least 8 characters long)."""
    raw = user_id.encode("utf-8")
    forms = {
        "raw": user_id,
        "table key": user_key(user_id),
        "base64url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "base64": base64.b64encode(raw).decode().rstrip("="),
        "percent-encoded": quote(user_id, safe=""),
        "percent-encoded path": quote(user_id),
        "form-encoded": quote_plus(user_id),
        "percent-encoded key": quote(f"'{user_key(user_id)}'", safe=""),
    }
    return {name: form for name, form in forms.items() if len(form) >= 8}


def found_ids(text: str, user_ids: list[str]) -> list[str]:
    """``"<form> of <id>"`` for every form of every id that occurs in ``text``."""
    return [f"{name} of {user_id!r}" for user_id in user_ids
            for name, form in id_forms(user_id).items() if form in text]
