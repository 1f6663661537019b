"""Which api-versions each ACS Identity operation accepts, and what each version validates.

Sources (read while writing this, never at run time):

* The ``api-supported-versions`` header of the real service, as recorded by the SDKs:
  identity operations advertise ``2020-07-20-preview2, 2021-02-22-preview1, 2021-03-07,
  2021-10-31-preview, 2021-11-01, 2022-06-01, 2022-10-01, 2023-08-01``
  (Azure/azure-sdk-for-net sdk/communication/Azure.Communication.Identity/tests/SessionRecords/
  CommunicationIdentityClientLiveTests/CreateIdentityWithServiceVersion_V2021_03_07.json);
  the Teams exchange advertises only ``2021-10-31-preview, 2022-06-01, 2022-10-01, 2023-08-01``
  (Azure/azure-sdk-for-python sdk/communication/azure-communication-identity/tests/recordings/
  test_communication_identity_client.pyTestClienttest_get_token_for_teams_user_with_wrong_user_object_id.json).
* Later versions from the REST specs (Azure/azure-rest-api-specs
  specification/communication/data-plane/Identity/stable/{2023-10-01,2025-06-30,2026-07-22,
  2026-09-23} and preview/{2025-03-02-preview,2025-04-01-preview}). 2023-10-01 is what the
  current Python (1.5.0) and JS (1.3.1) SDKs send. ``stable/2022-09-01`` exists in the spec
  repository but no recorded header ever advertised it, so it is refused.
* ``expiresInMinutes`` exists from 2022-10-01 (the 2022-10-01 recordings validate it:
  ...test_get_token_with_invalid_custom_expirations[max_invalid_mins-1441].json); older
  versions do not know the field and ignore it.
* The join scopes (``chat.join``, ``chat.join.limited``, ``voip.join``) exist from 2023-10-01
  (stable/2023-08-01/CommunicationIdentity.json still lists only ``chat`` and ``voip``).
* ``customId`` on create exists from 2025-03-02-preview/2025-06-30; the emulator does not
  implement it and says so with a 400 instead of silently ignoring it.
"""

from __future__ import annotations

from dataclasses import dataclass

IDENTITY_VERSIONS = (
    "2020-07-20-preview2",
    "2021-02-22-preview1",
    "2021-03-07",
    "2021-10-31-preview",
    "2021-11-01",
    "2022-06-01",
    "2022-10-01",
    "2023-08-01",
    "2023-10-01",
    "2025-03-02-preview",
    "2025-04-01-preview",
    "2025-06-30",
    "2026-07-22",
    "2026-09-23",
)
TEAMS_VERSIONS = tuple(
    v for v in IDENTITY_VERSIONS if v >= "2021-10-31" and v not in ("2021-11-01",)
)
IDENTITY_HEADER = ", ".join(IDENTITY_VERSIONS)
TEAMS_HEADER = ", ".join(TEAMS_VERSIONS)

BASE_SCOPES = ("chat", "voip")
JOIN_SCOPES = ("chat.join", "chat.join.limited", "voip.join")


@dataclass(frozen=True)
class VersionRules:
    """What one api-version validates."""

    version: str
    custom_expiry: bool
    scopes: frozenset[str]
    scope_list: str
    custom_id: bool


def _rules(version: str) -> VersionRules:
    date = version[:10]
    scopes = BASE_SCOPES + (JOIN_SCOPES if date >= "2023-10-01" else ())
    return VersionRules(
        version=version,
        custom_expiry=date >= "2022-10-01",
        scopes=frozenset(scopes),
        scope_list=", ".join(scopes),
        custom_id=date >= "2025-03-02",
    )


RULES = {v: _rules(v) for v in IDENTITY_VERSIONS}
_TEAMS_SET = frozenset(TEAMS_VERSIONS)


def supported(version: str, teams: bool) -> bool:
    return version in _TEAMS_SET if teams else version in RULES
