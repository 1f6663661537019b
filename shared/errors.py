"""One exception tree for the whole service.

Every failure a caller can see is a :class:`ServiceError` carrying its HTTP status and a
stable machine-readable code; ``shared.http`` is the only place that turns them into
responses. Messages are written for callers and must never contain a token, key,
connection string or internal detail: adapters translate SDK exceptions into these
types and drop the originals' text.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the service raises on purpose."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class BadRequest(ServiceError):
    """The request is malformed; ``field`` names the offending part when there is one."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PayloadTooLarge(BadRequest):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(BadRequest):
    status = 415
    code = "unsupported_media_type"


class Unauthenticated(ServiceError):
    """Missing or invalid credentials: rendered with ``WWW-Authenticate: Bearer``."""

    status = 401
    code = "unauthenticated"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class UserDeleted(ServiceError):
    """The user is being deleted: token endpoints answer 410 until it is restored or purged."""

    status = 410
    code = "user_deleted"


class Throttled(ServiceError):
    """A dependency (ACS) is rate-limiting us; the caller should come back later."""

    status = 429
    code = "throttled"

    def __init__(self, message: str = "too many requests", *, retry_after: int = 1) -> None:
        super().__init__(message, retry_after=max(1, retry_after))


class Unavailable(ServiceError):
    """A dependency is unreachable, failing or too slow; retrying later should work."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str = "service temporarily unavailable", *,
                 retry_after: int = 2) -> None:
        super().__init__(message, retry_after=max(1, retry_after))


class ConfigurationError(Unavailable):
    """A setting is missing or invalid. The detail (naming the setting) goes to the log;
    callers only see a generic 503, because configuration is not theirs to know."""

    code = "misconfigured"
    public_message = "service is not configured"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retry_after=30)


# -- store-level signals: raised by storage adapters, handled by the service ------------

class StoreConflict(Conflict):
    """An insert found the row already there (insert-if-absent lost a race)."""

    code = "store_conflict"


class PreconditionFailed(Conflict):
    """An ETag-conditional write found the row changed (or gone) since it was read."""

    code = "precondition_failed"


class AcsIdentityNotFound(NotFound):
    """ACS does not know the identity (deleted, or never existed)."""

    code = "acs_identity_not_found"


class AcsRejected(ServiceError):
    """ACS refused a request as invalid (for example a bad Teams token)."""

    status = 400
    code = "acs_rejected"
