"""Typed, validated settings, read from app settings (environment variables) on first use.

Importing this module reads nothing: function_app.py must import without any
environment, and a bad setting must fail the first request with an error that names the
setting (logged in full, shown to callers only as a generic 503).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import ConfigurationError
from .models import AuthMode, EventAction, Scope

SETTING_NAMES: tuple[str, ...] = (
    "COMMUNICATION_SERVICES_CONNECTION_STRING",
    "COMMUNICATION_SERVICES_ENDPOINT",
    "IDENTITY_TABLE_CONNECTION",
    "AzureWebJobsStorage",
    "IDENTITY_TABLE_SERVICE_URI",
    "AZURE_CLIENT_ID",
    "IDENTITY_TABLE_NAME",
    "AUTH_MODE",
    "AUTH_ISSUER",
    "AUTH_AUDIENCE",
    "AUTH_JWKS_URI",
    "AUTH_USER_CLAIM",
    "AUTH_ADMIN_ROLE",
    "AUTH_ROLES_CLAIM",
    "AUTH_REQUIRED_SCOPES",
    "ALLOWED_SCOPES",
    "DEFAULT_SCOPES",
    "TOKEN_LIFETIME_MINUTES",
    "DELETION_GRACE_MINUTES",
    "PURGE_SCHEDULE",
    "PURGE_BATCH_SIZE",
    "ACS_DELETE_LIMIT_PER_30S",
    "ACS_TIMEOUT_SECONDS",
    "CREATE_LEASE_SECONDS",
    "EVENT_ACTIONS",
    "WEBSITE_AUTH_ENABLED",
    "AzureWebJobsStorage__queueServiceUri",
    "REVOKE_QUEUE_NAME",
)

DEFAULT_EVENT_ACTIONS = (
    "Microsoft.Graph.UserDeleted=delete,Microsoft.Graph.UserUpdated=revoke,"
    "TokenService.RevokeTokens=revoke,TokenService.DeleteUser=delete"
)
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
#: Queue names: 3-63 lowercase letters, digits and single dashes, starting and ending
#: alphanumeric; "-poison" must still fit (the host's poison queue is `<name>-poison`).
_QUEUE_NAME = re.compile(r"^(?=.{3,56}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$")
DEFAULT_REVOKE_QUEUE = "acs-revoke-after-delete"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment, already validated."""

    acs_connection_string: str | None = field(default=None, repr=False)
    acs_endpoint: str | None = None
    table_connection: str | None = field(default=None, repr=False)
    table_service_uri: str | None = None
    azure_client_id: str | None = None
    table_name: str = "AcsIdentities"
    auth_mode: AuthMode = AuthMode.JWT
    auth_issuer: str | None = None
    auth_audience: tuple[str, ...] = ()
    auth_jwks_uri: str | None = None
    auth_user_claims: tuple[str, ...] = ("oid", "sub")
    auth_admin_role: str = "TokenService.Admin"
    auth_roles_claim: str = "roles"
    auth_required_scopes: tuple[str, ...] = ()
    allowed_scopes: frozenset[Scope] = frozenset({Scope.CHAT, Scope.VOIP})
    default_scopes: tuple[Scope, ...] = (Scope.CHAT, Scope.VOIP)
    token_lifetime_minutes: int = 1440
    deletion_grace_minutes: int = 1440
    purge_batch_size: int = 500
    acs_delete_limit_per_30s: int = 500
    acs_timeout_seconds: float = 10.0
    create_lease_seconds: int = 60
    event_actions: Mapping[str, EventAction] = field(default_factory=dict)
    #: Where deletes schedule their delayed revoke: AzureWebJobsStorage's queue service,
    #: by connection string or (on Azure) by managed identity; neither means in-process.
    queue_connection: str | None = field(default=None, repr=False)
    queue_service_uri: str | None = None
    revoke_queue_name: str = DEFAULT_REVOKE_QUEUE


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default ``os.environ``), or raise
    :class:`ConfigurationError` naming the first bad setting."""
    env = os.environ if env is None else env

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    acs_cs, acs_endpoint = get("COMMUNICATION_SERVICES_CONNECTION_STRING"), None
    if acs_cs is None:
        acs_endpoint = get("COMMUNICATION_SERVICES_ENDPOINT")
        if acs_endpoint is None:
            raise ConfigurationError(
                "COMMUNICATION_SERVICES_CONNECTION_STRING or COMMUNICATION_SERVICES_ENDPOINT "
                "must be set")
        _require_url("COMMUNICATION_SERVICES_ENDPOINT", acs_endpoint, https=True)
    elif "endpoint=" not in acs_cs.lower() or "accesskey=" not in acs_cs.lower():
        raise ConfigurationError(
            "COMMUNICATION_SERVICES_CONNECTION_STRING must look like endpoint=...;accesskey=...")

    table_uri = get("IDENTITY_TABLE_SERVICE_URI")
    table_cs = get("IDENTITY_TABLE_CONNECTION")
    if table_cs is None and table_uri is None:
        table_cs = get("AzureWebJobsStorage")
    if table_cs is None and table_uri is None:
        raise ConfigurationError(
            "IDENTITY_TABLE_CONNECTION (or AzureWebJobsStorage) or IDENTITY_TABLE_SERVICE_URI "
            "must be set")
    if table_cs is None and table_uri is not None:
        _require_url("IDENTITY_TABLE_SERVICE_URI", table_uri, https=False)

    table_name = get("IDENTITY_TABLE_NAME") or "AcsIdentities"
    if not _TABLE_NAME.match(table_name):
        raise ConfigurationError(
            "IDENTITY_TABLE_NAME must be 3-63 letters or digits, starting with a letter")

    mode_raw = (get("AUTH_MODE") or "jwt").lower()
    try:
        mode = AuthMode(mode_raw)
    except ValueError:
        raise ConfigurationError("AUTH_MODE must be 'jwt' or 'easyauth'") from None

    if mode is AuthMode.EASYAUTH and (get("WEBSITE_AUTH_ENABLED") or "").lower() != "true":
        # The principal header is trustworthy only when App Service Authentication sets
        # it (and strips clients' copies); without it anyone could claim to be anyone.
        raise ConfigurationError(
            "AUTH_MODE=easyauth requires App Service Authentication (WEBSITE_AUTH_ENABLED=True)")
    issuer, audience, jwks = get("AUTH_ISSUER"), _csv(get("AUTH_AUDIENCE")), get("AUTH_JWKS_URI")
    if mode is AuthMode.JWT:
        if issuer is None:
            raise ConfigurationError("AUTH_ISSUER is required when AUTH_MODE=jwt")
        if not audience:
            raise ConfigurationError("AUTH_AUDIENCE is required when AUTH_MODE=jwt")
        _require_url("AUTH_ISSUER", issuer, https=True)
        if jwks is not None:
            _require_url("AUTH_JWKS_URI", jwks, https=True)

    claims = _csv(get("AUTH_USER_CLAIM")) or ("oid", "sub")
    allowed = frozenset(_scopes("ALLOWED_SCOPES", get("ALLOWED_SCOPES") or "chat,voip"))
    default = tuple(dict.fromkeys(_scopes("DEFAULT_SCOPES", get("DEFAULT_SCOPES") or "chat,voip")))
    if not set(default) <= allowed:
        raise ConfigurationError("DEFAULT_SCOPES must be a subset of ALLOWED_SCOPES")

    queue_cs = get("AzureWebJobsStorage")
    if queue_cs is not None and not _has_queue_endpoint(queue_cs):
        queue_cs = None
    queue_uri = None if queue_cs is not None else get("AzureWebJobsStorage__queueServiceUri")
    if queue_uri is not None:
        _require_url("AzureWebJobsStorage__queueServiceUri", queue_uri, https=False)
    queue_name = get("REVOKE_QUEUE_NAME") or DEFAULT_REVOKE_QUEUE
    if not _QUEUE_NAME.match(queue_name):
        raise ConfigurationError(
            "REVOKE_QUEUE_NAME must be 3-56 lowercase letters, digits or single dashes, "
            "starting and ending with a letter or digit")

    return Settings(
        queue_connection=queue_cs,
        queue_service_uri=queue_uri,
        revoke_queue_name=queue_name,
        acs_connection_string=acs_cs,
        acs_endpoint=acs_endpoint,
        table_connection=table_cs,
        table_service_uri=table_uri if table_cs is None else None,
        azure_client_id=get("AZURE_CLIENT_ID"),
        table_name=table_name,
        auth_mode=mode,
        # Exactly as configured: Entra ID v1 (https://sts.windows.net/<tenant>/) and Auth0
        # (https://<domain>/) issuers end with '/', and `iss` is compared as a string.
        auth_issuer=issuer,
        auth_audience=audience,
        auth_jwks_uri=jwks,
        auth_user_claims=claims,
        auth_admin_role=get("AUTH_ADMIN_ROLE") or "TokenService.Admin",
        auth_roles_claim=get("AUTH_ROLES_CLAIM") or "roles",
        auth_required_scopes=tuple(dict.fromkeys(
            (get("AUTH_REQUIRED_SCOPES") or "").replace(",", " ").split())),
        allowed_scopes=allowed,
        default_scopes=default,
        token_lifetime_minutes=_int(env, "TOKEN_LIFETIME_MINUTES", 1440, 60, 1440),
        deletion_grace_minutes=_int(env, "DELETION_GRACE_MINUTES", 1440, 0, 525600),
        purge_batch_size=_int(env, "PURGE_BATCH_SIZE", 500, 1, 100000),
        acs_delete_limit_per_30s=_int(env, "ACS_DELETE_LIMIT_PER_30S", 500, 1, 1000000),
        acs_timeout_seconds=float(_int(env, "ACS_TIMEOUT_SECONDS", 10, 1, 120)),
        create_lease_seconds=_int(env, "CREATE_LEASE_SECONDS", 60, 5, 3600),
        event_actions=_event_actions(get("EVENT_ACTIONS") or DEFAULT_EVENT_ACTIONS),
    )


def _has_queue_endpoint(connection_string: str) -> bool:
    """Whether a storage connection string reaches a queue service: the emulator
    shortcut, an explicit QueueEndpoint, or an account with no explicit endpoints at all
    (the SDK derives them). A table-only string (TableEndpoint alone) does not."""
    lowered = connection_string.lower().replace(" ", "")
    if "usedevelopmentstorage=true" in lowered or "queueendpoint=" in lowered:
        return True
    return "accountname=" in lowered and "endpoint=" not in lowered.replace(
        "endpointsuffix=", "").replace("defaultendpointsprotocol=", "")


def _csv(raw: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (raw or "").split(",") if part.strip())


def _scopes(name: str, raw: str) -> list[Scope]:
    values = _csv(raw)
    if not values:
        raise ConfigurationError(f"{name} must name at least one scope")
    try:
        return [Scope(v) for v in values]
    except ValueError:
        known = ", ".join(s.value for s in Scope)
        raise ConfigurationError(f"{name} has an unknown scope; known: {known}") from None


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise ConfigurationError(f"{name} must be between {lo} and {hi}")
    return value


def _event_actions(raw: str) -> dict[str, EventAction]:
    actions: dict[str, EventAction] = {}
    for pair in _csv(raw):
        event_type, sep, action = pair.partition("=")
        try:
            if not sep or not event_type.strip():
                raise ValueError
            actions[event_type.strip()] = EventAction(action.strip().lower())
        except ValueError:
            raise ConfigurationError(
                "EVENT_ACTIONS must be a comma list of EventType=revoke|delete") from None
    return actions


def _require_url(name: str, value: str, *, https: bool) -> None:
    """An ``http://`` URL is accepted only on loopback, for offline development."""
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and (parts.hostname in _LOOPBACK or not https):
        return
    raise ConfigurationError(f"{name} must be an https URL (http is allowed only on loopback)")


_cached: Settings | None = None


def get_settings() -> Settings:
    """The worker's settings, loaded and validated once, on first use."""
    global _cached
    if _cached is None:
        _cached = load_settings()
    return _cached


def reset_settings() -> None:
    """Forget cached settings (tests and the local host change the environment)."""
    global _cached
    _cached = None
