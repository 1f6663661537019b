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


# -- the one path form of a user id --------------------------------------------------------
#: The Functions host (ASP.NET Core) decodes every percent-escape in a route value except
#: ``%2F``, which stays as the three characters ``%2F`` (dotnet/aspnetcore#2655, #17864),
#: and removes ``.``/``..`` segments. So ``a%2Fb`` arrives alike for the ids ``a/b`` and
#: ``a%2Fb``; ids that cannot travel literally therefore travel as ``b64.`` + base64url.
B64_PREFIX = "b64."
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_PATH_RULE = ("ids that contain '/' or '%', start with 'b64.' or are '.' or '..' are written "
              "'b64.' + the unpadded base64url of their UTF-8")


def _needs_b64(user_id: str) -> bool:
    return ("/" in user_id or "%" in user_id or user_id.startswith(B64_PREFIX)
            or user_id in (".", ".."))


def _b64url(user_id: str) -> str:
    return base64.urlsafe_b64encode(user_id.encode("utf-8")).decode("ascii").rstrip("=")


def path_form(user_id: str) -> str:
    """The one route value that names ``user_id`` in ``/api/users/{userId}``.

    The id itself, unless it contains ``/`` or ``%``, starts with ``b64.``, or is ``.`` or
    ``..``; then ``b64.`` + the unpadded base64url (RFC 4648 section 5) of its UTF-8 bytes.
    Injective: literal forms never start with ``b64.``, encoded forms always do, and each
    branch is injective on its own. A client percent-encodes this value (every byte outside
    ``A-Z a-z 0-9 - . _ ~``) to build the path segment; the host decodes that back to
    exactly this value, because the value holds no ``%``.
    """
    validate_user_id(user_id)
    return B64_PREFIX + _b64url(user_id) if _needs_b64(user_id) else user_id


def user_id_from_path(value: str, *, field: str = "userId") -> str:
    """The id whose :func:`path_form` is ``value``; any other value is a 400 that names the
    canonical form, so that no spelling of one id can address another."""
    if not value.startswith(B64_PREFIX):
        validate_user_id(value, field=field)
        if _needs_b64(value):
            raise BadRequest(f"{field} is not in canonical form: the id {value!r} is written "
                             f"{path_form(value)!r} ({_PATH_RULE})", field=field)
        return value
    decoded = _strict_b64url(value[len(B64_PREFIX):])
    if decoded is not None and not is_valid_user_id(decoded):
        decoded = None
    if decoded is not None:
        if _needs_b64(decoded):
            return decoded
        problem = f"{value!r} names the id {decoded!r}, which is written {decoded!r}"
    else:
        problem = f"{field} is not valid b64.<unpadded base64url of a valid id>"
    if is_valid_user_id(value):
        # The value may also have been meant literally: an id that itself starts with b64.
        problem += f"; the id {value!r} itself is written {path_form(value)!r}"
    raise BadRequest(f"{field} is not in canonical form: {problem} ({_PATH_RULE})"
                     if decoded is not None else f"{problem} ({_PATH_RULE})", field=field)


def _strict_b64url(encoded: str) -> str | None:
    """The UTF-8 text whose unpadded base64url is exactly ``encoded``, else None (the
    standard decoder skips stray characters and ignores trailing bits, which would give
    one id many spellings)."""
    if not _BASE64URL.fullmatch(encoded) or len(encoded) > 2 * MAX_USER_ID_BYTES:
        return None
    try:
        text = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    return text if _b64url(text) == encoded else None


def is_valid_user_id(user_id: str) -> bool:
    try:
        validate_user_id(user_id)
    except BadRequest:
        return False
    return True


def user_key(user_id: str) -> str:
    validate_user_id(user_id)
    return "u" + base64.urlsafe_b64encode(user_id.encode("utf-8")).decode("ascii").rstrip("=")


def user_id_from_key(key: str) -> str:
    raw = key[1:]
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8")
