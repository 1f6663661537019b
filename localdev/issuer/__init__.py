"""Local OIDC issuer for offline work: plays the callers' IdP, the App Service managed identity
endpoint and Entra (Teams user) tokens. Development only; loopback only. See docs/issuer.md.
"""

from .keys import (
    DEFAULT_AUDIENCE,
    TEAMS_AUDIENCE,
    TEAMS_SCOPES,
    IssuerKeys,
    SigningKey,
    read_issuer_info,
)
from .process import IssuerProcess, IssuerServer

__all__ = [
    "DEFAULT_AUDIENCE",
    "TEAMS_AUDIENCE",
    "TEAMS_SCOPES",
    "IssuerKeys",
    "IssuerProcess",
    "IssuerServer",
    "SigningKey",
    "read_issuer_info",
]
