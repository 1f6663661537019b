"""The app with no connection strings: managed identity against the offline stack.

* Azurite (table) over HTTPS with ``--oauth basic``; its certificate is issued by the
  session CA (``tests/conftest.py`` ``ACS_DIR``), the one ``SSL_CERT_FILE`` names, so the
  unmodified aio SDK clients trust it exactly as they trust the ACS emulator.
* The session issuer (``IssuerServer``) serves the App Service managed identity endpoint
  (``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``); its ``iss https://sts.windows.net/<tenant>/``
  tokens are accepted by Azurite ``--oauth basic`` and, because the session emulator was
  started with ``trusted_jwks_uri=issuer.jwks_uri``, by the ACS emulator.
* ``wire`` records every request the SDKs put on the wire (after every pipeline policy,
  authentication included), so tests can prove which credential each request carried.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

#: The user-assigned identity the app is told to use (AZURE_CLIENT_ID).
CLIENT_ID = "5f1c7a4e-0d7b-4c2e-9a51-3b8e6f2d9c10"

#: Settings that would give the app (or azure-identity) a key or another credential.
_KEY_SETTINGS = (
    "COMMUNICATION_SERVICES_CONNECTION_STRING",
    "IDENTITY_TABLE_CONNECTION",
    "AzureWebJobsStorage",
)
_OTHER_CREDENTIAL_ENV = (
    "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
    "AZURE_TOKEN_CREDENTIALS", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "MSI_ENDPOINT",
    "MSI_SECRET", "IDENTITY_ENDPOINT", "IDENTITY_HEADER",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
)


@pytest.fixture(scope="session")
def azurite_mi() -> Iterator[Any]:
    """azurite-table over HTTPS (session CA) with ``--oauth basic``, in memory."""
    from localdev import tls
    from localdev.azurite import AzuriteProcess

    # The CA that tests/conftest.py put in SSL_CERT_FILE (its ACS_DIR), read back from the
    # environment so that this is the very file aiohttp loaded at import.
    acs_dir = Path(os.environ["SSL_CERT_FILE"]).parent
    ca = tls.ensure_ca(acs_dir)
    cert, key = tls.ensure_server_cert(acs_dir.parent / "azurite-tls", ca, name="azurite",
                                       hosts=("127.0.0.1", "localhost"))
    with AzuriteProcess(https=(cert, key), oauth=True,
                        log_file=acs_dir.parent / "azurite-mi.log") as process:
        yield process


@dataclass
class Sent:
    method: str
    url: str
    authorization: str

    @property
    def port(self) -> int | None:
        return urlsplit(self.url).port

    @property
    def scheme(self) -> str:
        return self.authorization.partition(" ")[0]

    @property
    def bearer(self) -> str:
        scheme, _, token = self.authorization.partition(" ")
        assert scheme == "Bearer", self.authorization[:20]
        return token


@dataclass
class Wire:
    """Every request the aio SDK transports sent, in order."""

    sent: list[Sent] = field(default_factory=list)

    def to(self, port: int) -> list[Sent]:
        return [s for s in self.sent if s.port == port]

    def clear(self) -> None:
        self.sent.clear()


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    from azure.core.pipeline.transport import AioHttpTransport

    recorded = Wire()
    original = AioHttpTransport.send

    async def send(self: Any, request: Any, **kwargs: Any) -> Any:
        recorded.sent.append(Sent(request.method, request.url,
                                  request.headers.get("Authorization", "")))
        return await original(self, request, **kwargs)

    monkeypatch.setattr(AioHttpTransport, "send", send)
    return recorded


@pytest.fixture
async def mi_app_env(azurite_mi: Any, issuer: Any, acs: Any,
                     monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, str]]:
    """function_app configured by environment only, with no key anywhere."""
    from shared import runtime

    acs.reset()
    for name in (*_KEY_SETTINGS, *_OTHER_CREDENTIAL_ENV, "AUTH_MODE", "AUTH_JWKS_URI",
                 "EVENT_ACTIONS"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "COMMUNICATION_SERVICES_ENDPOINT": acs.endpoint,
        "IDENTITY_TABLE_SERVICE_URI": azurite_mi.table_endpoint,
        "IDENTITY_TABLE_NAME": "mi" + uuid.uuid4().hex[:16],
        "AZURE_CLIENT_ID": CLIENT_ID,
        "AUTH_ISSUER": issuer.issuer,
        "AUTH_AUDIENCE": issuer.audience,
        "DELETION_GRACE_MINUTES": "0",
        "PURGE_SCHEDULE": "0 */5 * * * *",
        # As infra/app/api.bicep sets them: identity-based host storage, no connection string.
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": CLIENT_ID,
        **issuer.mi_env(),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    await runtime.reset()
    yield env
    await runtime.reset()
