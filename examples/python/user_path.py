"""The path segment that names an app user in the admin routes (``/api/users/{userId}``).

Every user id has exactly one path form: the id itself, unless it contains ``/`` or ``%``,
starts with ``b64.``, or is ``.`` or ``..``; then ``b64.`` + the unpadded base64url of its
UTF-8 bytes. The service refuses any other spelling with a 400 that names this form. The
form is then percent-encoded like any path segment.

    >>> user_path_segment("alice@contoso.com")
    'alice%40contoso.com'
    >>> user_path_segment("a/b")
    'b64.YS9i'
"""

from __future__ import annotations

import base64
from urllib.parse import quote


def user_path_form(user_id: str) -> str:
    if ("/" in user_id or "%" in user_id or user_id.startswith("b64.")
            or user_id in (".", "..")):
        return "b64." + base64.urlsafe_b64encode(user_id.encode("utf-8")).decode().rstrip("=")
    return user_id


def user_path_segment(user_id: str) -> str:
    return quote(user_path_form(user_id), safe="")
