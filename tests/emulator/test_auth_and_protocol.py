"""HMAC authentication, api-version handling, routing, ids on the wire, headers."""

from __future__ import annotations

import email.utils
import time
import urllib.parse

import pytest
import requests

from localdev.acs_emulator import EmulatorProcess

from .helpers import API, create_identity, quote_id, signed


def _denied(r: requests.Response) -> None:
    assert r.status_code == 401, r.text
    body = r.json()
    assert body["error"]["code"] == "Denied"
    assert isinstance(body["error"]["message"], str)
    # Recorded 401s carry no charset and no api-supported-versions (Azure/azure-sdk-for-python
    # sdk/communication/azure-communication-identity/tests/recordings/test_communication_identity
    # _client.pyTestClienttest_get_token_for_teams_user_with_expired_token.json).
    assert r.headers["Content-Type"] == "application/json"
    assert "api-supported-versions" not in r.headers


def test_valid_signature_accepted(emu: EmulatorProcess) -> None:
    r = signed(emu, "POST", f"/identities?api-version={API}")
    assert r.status_code == 201
    assert r.json()["identity"]["id"].startswith("8:acs:")
    assert "accessToken" not in r.json()


def test_bad_signature(emu: EmulatorProcess) -> None:
    _denied(signed(emu, "POST", f"/identities?api-version={API}", key="c2VjcmV0LWJ1dC13cm9uZw=="))
    assert emu.identities() == []


def test_signature_over_other_path_rejected(emu: EmulatorProcess) -> None:
    ident = create_identity(emu)
    # Signed over the decoded id but sent encoded: the raw request target is what counts.
    r = signed(
        emu,
        "POST",
        f"/identities/{quote_id(ident)}/:revokeAccessTokens?api-version={API}",
        signed_path=f"/identities/{ident}/:revokeAccessTokens?api-version={API}",
    )
    _denied(r)


def test_signed_host_must_match_host_header(emu: EmulatorProcess) -> None:
    _denied(signed(emu, "POST", f"/identities?api-version={API}", signed_host="example.com"))
    r = signed(
        emu,
        "POST",
        f"/identities?api-version={API}",
        signed_host="localhost:1234",
        headers={"Host": "localhost:1234"},
    )
    assert r.status_code == 201


@pytest.mark.parametrize("offset", [-16 * 60, 16 * 60])
def test_stale_or_future_date(emu: EmulatorProcess, offset: int) -> None:
    date = email.utils.formatdate(time.time() + offset, usegmt=True)
    _denied(signed(emu, "POST", f"/identities?api-version={API}", date=date))


def test_date_within_skew_accepted(emu: EmulatorProcess) -> None:
    date = email.utils.formatdate(time.time() - 14 * 60, usegmt=True)
    assert signed(emu, "POST", f"/identities?api-version={API}", date=date).status_code == 201


def test_garbage_date(emu: EmulatorProcess) -> None:
    _denied(signed(emu, "POST", f"/identities?api-version={API}", date="yesterday"))


def test_wrong_body_hash(emu: EmulatorProcess) -> None:
    ident = create_identity(emu)
    path = f"/identities/{quote_id(ident)}/:issueAccessToken?api-version={API}"
    # header claims the hash of a different body (signature consistent with the header)
    r = signed(
        emu,
        "POST",
        path,
        {"scopes": ["chat"]},
        content_hash="47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    )
    _denied(r)


def test_missing_authorization(emu: EmulatorProcess) -> None:
    r = requests.post(
        emu.endpoint + f"identities?api-version={API}", verify=emu.ca_file, timeout=10
    )
    _denied(r)
    assert emu.stats()["unauthenticated"] == 1
    assert emu.stats()["requests"]["createIdentity"] == 0


def test_bearer_without_trusted_jwks(emu: EmulatorProcess) -> None:
    r = requests.post(
        emu.endpoint + f"identities?api-version={API}",
        headers={"Authorization": "Bearer a.b.c"},
        verify=emu.ca_file,
        timeout=10,
    )
    _denied(r)


def test_missing_api_version(emu: EmulatorProcess) -> None:
    r = signed(emu, "POST", "/identities")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "MissingApiVersionParameter"
    assert emu.identities() == []


@pytest.mark.parametrize("version", ["2020-07-20", "2023-10-01-preview", "latest", "2024-01-01"])
def test_unsupported_api_version(emu: EmulatorProcess, version: str) -> None:
    r = signed(emu, "POST", f"/identities?api-version={version}")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "UnsupportedApiVersion"
    assert "2023-10-01" in r.headers["api-supported-versions"]


def test_teams_exchange_not_in_2021_03_07(emu: EmulatorProcess) -> None:
    r = signed(
        emu,
        "POST",
        "/teamsUser/:exchangeAccessToken?api-version=2021-03-07",
        {"token": "x", "appId": "a", "userId": "u"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "UnsupportedApiVersion"


def test_encoded_and_unencoded_ids(emu: EmulatorProcess) -> None:
    a = create_identity(emu)
    b = create_identity(emu)
    # Python sync / JS: 8%3Aacs%3A...; Python aio: 8:acs:... raw
    r1 = signed(
        emu,
        "POST",
        f"/identities/{quote_id(a)}/:issueAccessToken?api-version={API}",
        {"scopes": ["chat"]},
    )
    r2 = signed(
        emu, "POST", f"/identities/{b}/:issueAccessToken?api-version={API}", {"scopes": ["chat"]}
    )
    assert r1.status_code == 200, r1.text
    assert r2.status_code == 200, r2.text
    assert emu.validate(r1.json()["token"])["identity"] == a
    assert emu.validate(r2.json()["token"])["identity"] == b
    assert signed(emu, "DELETE", f"/identities/{quote_id(a)}?api-version={API}").status_code == 204
    assert signed(emu, "DELETE", f"/identities/{b}?api-version={API}").status_code == 204
    assert emu.identities() == []


def test_malformed_json(emu: EmulatorProcess) -> None:
    ident = create_identity(emu)
    path = f"/identities/{quote_id(ident)}/:issueAccessToken?api-version={API}"
    r = signed(emu, "POST", path, b'{"scopes": [')
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "InvalidRequestBody"
    r = signed(emu, "POST", f"/identities?api-version={API}", b"not json")
    assert r.status_code == 400
    r = signed(emu, "POST", f"/identities?api-version={API}", b"[1,2]")
    assert r.status_code == 400
    assert emu.identities() == [ident]


def test_issue_requires_scopes(emu: EmulatorProcess) -> None:
    ident = create_identity(emu)
    path = f"/identities/{quote_id(ident)}/:issueAccessToken?api-version={API}"
    for body in (b"", {}, {"scopes": []}, {"scopes": "chat"}, {"scopes": [1]}):
        r = signed(emu, "POST", path, body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["code"] in ("ValidationError", "InvalidRequestBody")


@pytest.mark.parametrize("value", ["90", 90.5, True, 0, -60, 100000])
def test_bad_expires_in_minutes_values(emu: EmulatorProcess, value: object) -> None:
    r = signed(
        emu,
        "POST",
        f"/identities?api-version={API}",
        {"createTokenWithScopes": ["chat"], "expiresInMinutes": value},
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "ValidationError"
    assert r.json()["error"]["target"] == "ExpiresInMinutes"


def test_expiry_message_exactly_like_azure(emu: EmulatorProcess) -> None:
    r = signed(
        emu,
        "POST",
        f"/identities?api-version={API}",
        {"createTokenWithScopes": ["chat"], "expiresInMinutes": 59},
    )
    assert r.json() == {
        "error": {
            "code": "ValidationError",
            "message": "ExpiresInMinutes value 59 is invalid. "
            "Value must be within the [60, 1440] interval.",
            "target": "ExpiresInMinutes",
        }
    }


def test_unknown_route_and_method(emu: EmulatorProcess) -> None:
    r = signed(emu, "GET", f"/identities?api-version={API}")
    assert r.status_code == 405
    assert r.json()["error"]["code"]
    r = signed(emu, "POST", f"/nothing?api-version={API}")
    assert r.status_code == 404
    assert "error" in r.json()


def test_response_headers(emu: EmulatorProcess) -> None:
    r = signed(
        emu,
        "POST",
        f"/identities?api-version={API}",
        {"createTokenWithScopes": ["chat"]},
        headers={"x-ms-client-request-id": "abc-123"},
    )
    assert r.status_code == 201
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.headers["x-ms-client-request-id"] == "abc-123"
    # The recorded header (Azure/azure-sdk-for-net sdk/communication/Azure.Communication.Identity/
    # tests/SessionRecords/CommunicationIdentityClientLiveTests/CreateIdentityWithServiceVersion_
    # V2021_03_07.json) followed by the later versions of the REST specs.
    assert r.headers["api-supported-versions"].startswith(
        "2020-07-20-preview2, 2021-02-22-preview1, 2021-03-07, 2021-10-31-preview, 2021-11-01, "
        "2022-06-01, 2022-10-01, 2023-08-01, 2023-10-01"
    )
    cv = r.headers["MS-CV"]
    assert len(cv) >= 16
    ident = r.json()["identity"]["id"]
    expires_on = r.json()["accessToken"]["expiresOn"]
    assert expires_on.endswith("+00:00")
    assert "." in expires_on  # fractional seconds like the service

    r2 = signed(emu, "POST", f"/identities?api-version={API}")
    assert r2.headers["MS-CV"] != cv
    assert "x-ms-client-request-id" not in r2.headers

    # 204 and error responses carry them too
    r3 = signed(
        emu,
        "POST",
        f"/identities/{quote_id(ident)}/:revokeAccessTokens?api-version={API}",
        headers={"x-ms-client-request-id": "rev-1"},
    )
    assert r3.status_code == 204
    assert r3.content == b""
    assert "Content-Type" not in r3.headers
    assert r3.headers["x-ms-client-request-id"] == "rev-1"
    assert "MS-CV" in r3.headers
    assert "api-supported-versions" in r3.headers
    r4 = signed(emu, "POST", "/identities", headers={"x-ms-client-request-id": "err-1"})
    assert r4.status_code == 400
    assert r4.headers["x-ms-client-request-id"] == "err-1"
    assert "MS-CV" in r4.headers
    # error bodies: no charset (every recorded error, e.g. ...test_get_token_with_no_scopes.json)
    assert r4.headers["Content-Type"] == "application/json"


def test_sdk_sends_client_request_id_and_gets_it_back(emu: EmulatorProcess) -> None:
    from azure.communication.identity import CommunicationIdentityClient

    seen: dict[str, str] = {}

    def hook(response: object) -> None:
        http = response.http_response  # type: ignore[attr-defined]
        seen.update({k.lower(): v for k, v in http.headers.items()})
        seen["request-id"] = http.request.headers["x-ms-client-request-id"]

    c = CommunicationIdentityClient.from_connection_string(
        emu.connection_string, connection_verify=emu.ca_file
    )
    c.create_user(raw_response_hook=hook)
    assert seen["x-ms-client-request-id"] == seen["request-id"]
    assert urllib.parse.unquote(seen["content-type"]) == "application/json; charset=utf-8"
