"""Table keys for app user ids.

Table Storage keys forbid ``/ \\ # ?`` and control characters and stop at 1 KiB of UTF-16
(512 characters), while
an IdP may put almost anything in ``sub``. Keys are therefore the unpadded URL-safe
base64 of the id's UTF-8 bytes: reversible (no two ids can collide), made only of
``A-Z a-z 0-9 - _`` (nothing can break a key or a query filter), and bounded because
ids are capped at :data:`MAX_USER_ID_BYTES`.
"""

from __future__ import annotations

import base64
import re

from .errors import BadRequest

#: OIDC caps ``sub`` at 255 ASCII characters; 256 bytes encode to 342 key characters,
#: inside the 512-character key limit even with the purge index's 17-character prefix.
MAX_USER_ID_BYTES = 256

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

USERS_ROW = "user"
CLAIMS_PARTITION = "~claims"
PURGE_PARTITION = "~purge"


def validate_user_id(user_id: str, *, field: str = "userId") -> str:
    """Reject ids no IdP would issue: empty, too long, or with control characters."""
    if not user_id:
        raise BadRequest(f"{field} must not be empty", field=field)
    if len(user_id.encode("utf-8", "surrogatepass")) > MAX_USER_ID_BYTES:
        raise BadRequest(f"{field} must be at most {MAX_USER_ID_BYTES} bytes", field=field)
    if _CONTROL.search(user_id):
        raise BadRequest(f"{field} must not contain control characters", field=field)
    try:
        user_id.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{field} must be valid unicode", field=field) from None
    return user_id


def user_key(user_id: str) -> str:
    validate_user_id(user_id)
    return "u" + base64.urlsafe_b64encode(user_id.encode("utf-8")).decode("ascii").rstrip("=")


def user_id_from_key(key: str) -> str:
    raw = key[1:]
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8")
