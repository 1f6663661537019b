"""Entra Bearer auth and the Teams token exchange against a JWKS served by the test."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import requests
from azure.communication.identity import CommunicationIdentityClient
from azure.communication.identity.aio import (
    CommunicationIdentityClient as AsyncCommunicationIdentityClient,
)
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from localdev.acs_emulator import EmulatorProcess

from .helpers import API, decode_segment, signed

ACS_AUD = "https://communication.azure.com"
TEAMS_AUD = "https://auth.msft.communication.azure.com"
APP_ID = "11111111-2222-3333-4444-555555555555"
TEAMS_SCP = "Teams.ManageCalls Teams.ManageChats"
# The real answers quoted below are in Azure/azure-sdk-for-python sdk/communication/
# azure-communication-identity/tests/recordings/test_communication_identity_client.pyTestClient
# test_get_token_for_teams_user_with_<case>.json ("REC <case>" below).


class Jwks:
    """A tiny JWKS endpoint whose key set the test can change."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps({"keys": list(outer.keys.values())}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/keys"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, kid: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
        if isinstance(key, rsa.RSAPrivateKey):
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            jwk["alg"] = "RS256"
        else:
            jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
            jwk["alg"] = "ES256"
        jwk["kid"] = kid
        jwk["use"] = "sig"
        self.keys[kid] = jwk

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks(rsa_key: rsa.RSAPrivateKey) -> Iterator[Jwks]:
    j = Jwks()
    j.add("rsa-1", rsa_key)
    yield j
    j.close()


@pytest.fixture(scope="module")
def jemu(jwks: Jwks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("acs-jwks"), trusted_jwks_uri=jwks.uri) as e:
        yield e


def make_jwt(key: Any, kid: str, alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": "https://sts.windows.net/tenant/", "iat": now, "nbf": now, "exp": now + 3600}
    body.update(claims)
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


class StaticCredential:
    def __init__(self, token: str):
        self.token = token
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


class AsyncStaticCredential(StaticCredential):
    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:  # type: ignore[override]
        return super().get_token(*scopes, **kwargs)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> AsyncStaticCredential:
        return self

    async def __aexit__(self, *a: object) -> None:
        pass


def bearer_post(emu: EmulatorProcess, token: str) -> requests.Response:
    return requests.post(
        f"{emu.endpoint}identities?api-version={API}",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        verify=emu.ca_file,
        timeout=10,
    )


# ---------------------------------------------------------------------------- Bearer
def test_sdk_with_token_credential(jemu: EmulatorProcess, rsa_key: rsa.RSAPrivateKey) -> None:
    cred = StaticCredential(make_jwt(rsa_key, "rsa-1", aud=ACS_AUD))
    c = CommunicationIdentityClient(jemu.endpoint, cred, connection_verify=jemu.ca_file)
    user, tok = c.create_user_and_token(["chat"])
    assert cred.scopes == ["https://communication.azure.com//.default"]
    assert jemu.validate(tok.token)["identity"] == user.properties["id"]
    c.delete_user(user)


async def test_aio_sdk_with_token_credential(
    jemu: EmulatorProcess, rsa_key: rsa.RSAPrivateKey
) -> None:
    cred = AsyncStaticCredential(make_jwt(rsa_key, "rsa-1", aud=ACS_AUD + "/"))
    async with AsyncCommunicationIdentityClient(
        jemu.endpoint, cred, connection_verify=jemu.ca_file
    ) as c:
        user = await c.create_user()
        assert user.properties["id"].startswith("8:acs:")
        assert user.properties["id"] in jemu.identities()
        await c.delete_user(user)
    assert user.properties["id"] not in jemu.identities()


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            lambda k: make_jwt(k, "rsa-1", aud="https://management.azure.com"), id="wrong-aud"
        ),
        pytest.param(
            lambda k: make_jwt(k, "rsa-1", aud=ACS_AUD, exp=int(time.time()) - 3600), id="expired"
        ),
        pytest.param(lambda k: make_jwt(k, "rsa-1"), id="no-aud"),
        pytest.param(lambda k: make_jwt(k, "nope", aud=ACS_AUD), id="unknown-kid"),
        pytest.param(
            lambda k: make_jwt(
                rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-1", aud=ACS_AUD
            ),
            id="foreign-key",
        ),
        pytest.param(
            lambda k: make_jwt("secret" * 8, "rsa-1", alg="HS256", aud=ACS_AUD), id="hs256"
        ),
        pytest.param(lambda k: "not-a-jwt", id="garbage"),
    ],
)
def test_bearer_rejections(
    jemu: EmulatorProcess, rsa_key: rsa.RSAPrivateKey, mutate: Callable[[Any], str]
) -> None:
    r = bearer_post(jemu, mutate(rsa_key))
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "Denied"


def test_bearer_trailing_slash_audience_and_no_issuer_check(
    jemu: EmulatorProcess, rsa_key: rsa.RSAPrivateKey
) -> None:
    r = bearer_post(jemu, make_jwt(rsa_key, "rsa-1", aud=ACS_AUD + "/", iss="anything"))
    assert r.status_code == 201, r.text


def test_unknown_kid_triggers_refetch(jemu: EmulatorProcess, jwks: Jwks) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    token = make_jwt(ec_key, "ec-new", alg="ES256", aud=ACS_AUD)
    assert bearer_post(jemu, token).status_code == 401
    jwks.add("ec-new", ec_key)
    before = jwks.fetches
    r = bearer_post(jemu, token)
    assert r.status_code == 201, r.text
    assert jwks.fetches == before + 1
    # cached now: no further fetch for a known kid
    assert bearer_post(jemu, token).status_code == 201
    assert jwks.fetches == before + 1


# ---------------------------------------------------------------------------- Teams
def teams_token(key: Any, oid: str, **claims: Any) -> str:
    base = {
        "aud": TEAMS_AUD, "appid": APP_ID, "oid": oid, "tid": str(uuid.uuid4()), "scp": TEAMS_SCP
    }
    base.update(claims)
    return make_jwt(key, "rsa-1", **base)


def test_teams_exchange_success(jemu: EmulatorProcess, rsa_key: rsa.RSAPrivateKey) -> None:
    oid = str(uuid.uuid4())
    exp = int(time.time()) + 5400
    c = CommunicationIdentityClient.from_connection_string(
        jemu.connection_string, connection_verify=jemu.ca_file
    )
    tok = c.get_token_for_teams_user(teams_token(rsa_key, oid, exp=exp), APP_ID, oid)
    claims = decode_segment(tok.token.split(".")[1])
    assert claims["skypeid"] == f"orgid:{oid}"
    assert claims["exp"] == exp
    assert jemu.validate(tok.token) == {"valid": True, "reason": "ok", "identity": f"8:orgid:{oid}"}
    assert jemu.stats()["requests"]["exchangeTeamsUserAccessToken"] >= 1


def test_teams_exchange_caps_at_24h_and_accepts_azp(
    jemu: EmulatorProcess, rsa_key: rsa.RSAPrivateKey
) -> None:
    oid = str(uuid.uuid4())
    entra = make_jwt(
        rsa_key, "rsa-1", aud=TEAMS_AUD, azp=APP_ID, oid=oid, exp=int(time.time()) + 48 * 3600,
        tid=str(uuid.uuid4()), scp=TEAMS_SCP,
    )
    r = signed(
        jemu,
        "POST",
        f"/teamsUser/:exchangeAccessToken?api-version={API}",
        {"token": entra, "appId": APP_ID, "userId": oid},
    )
    assert r.status_code == 200, r.text
    claims = decode_segment(r.json()["token"].split(".")[1])
    assert claims["exp"] - claims["iat"] <= 24 * 3600


@pytest.mark.parametrize(
    "case",
    [
        "wrong-aud", "acs-aud", "expired", "garbage", "foreign-key", "empty-token",
        "empty-token-and-user", "no-scp", "only-calls-scope", "no-tid",
    ],
)
def test_teams_exchange_invalid_token_is_401(
    jemu: EmulatorProcess, rsa_key: rsa.RSAPrivateKey, case: str
) -> None:
    """REC invalid_token[invalid_token-invalid], REC expired_token, REC invalid_token[empty_token-]
    (an empty token with an empty userId is still the 401: the token is checked first).
    Missing Teams scopes or tenant: the real answer is not recorded (see docs/emulator.md)."""
    oid = str(uuid.uuid4())
    app, user = APP_ID, oid
    token = teams_token(rsa_key, oid)
    if case == "wrong-aud":
        token = teams_token(rsa_key, oid, aud="https://graph.microsoft.com")
    elif case == "acs-aud":
        token = teams_token(rsa_key, oid, aud=ACS_AUD)
    elif case == "expired":
        token = teams_token(rsa_key, oid, exp=int(time.time()) - 10)
    elif case == "garbage":
        token = "aad.jwt.token"
    elif case == "foreign-key":
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = teams_token(other, oid)
    elif case == "empty-token":
        token = ""
    elif case == "empty-token-and-user":
        token, user = "", ""
    elif case == "no-scp":
        token = teams_token(rsa_key, oid, scp="User.Read")
    elif case == "only-calls-scope":
        token = teams_token(rsa_key, oid, scp="Teams.ManageCalls")
    elif case == "no-tid":
        token = teams_token(rsa_key, oid, tid=None)
    c = CommunicationIdentityClient.from_connection_string(
        jemu.connection_string, connection_verify=jemu.ca_file
    )
    with pytest.raises(ClientAuthenticationError) as ei:
        c.get_token_for_teams_user(token, app, user)
    assert ei.value.status_code == 401
    assert ei.value.error.code == "InvalidAccessToken"
    assert ei.value.error.message == "Provided access token is not valid."
    assert ei.value.error.target is None
    headers = ei.value.response.headers
    assert headers["Content-Type"] == "application/json"
    assert "api-supported-versions" not in headers


OTHER = "22222222-3333-4444-5555-666666666666"


@pytest.mark.parametrize(
    ("case", "message", "target", "advertised"),
    [
        # REC wrong_client_id: a valid token for another app
        ("wrong-app", "AAD application is not the expected one.", "appId", True),
        # REC wrong_user_object_id
        ("wrong-user", "Provided AAD token issued for unexpected user.", "userId", True),
        # REC invalid_client_id[invalid_client_id-invalid]
        ("bad-app-format", "Provided AppId has invalid format.", "appId", True),
        # REC invalid_user_object_id[invalid_user_object_id-invalid]
        ("bad-user-format", "Provided UserId has invalid format.", "userId", True),
        # REC invalid_client_id[empty_client_id-]
        ("empty-app", "AppId: The AppId field is required.", "AppId", False),
        # REC invalid_user_object_id[empty_user_object_id-]
        ("empty-user", "UserId: The UserId field is required.", "UserId", False),
    ],
)
def test_teams_exchange_wrong_ids_are_400_not_401(
    jemu: EmulatorProcess,
    rsa_key: rsa.RSAPrivateKey,
    case: str,
    message: str,
    target: str,
    advertised: bool,
) -> None:
    """On Azure these are HttpResponseError (400), not ClientAuthenticationError (401)."""
    oid = str(uuid.uuid4())
    app, user = APP_ID, oid
    token = teams_token(rsa_key, oid)
    if case == "wrong-app":
        app = OTHER
    elif case == "wrong-user":
        user = OTHER
    elif case == "bad-app-format":
        app = "invalid"
    elif case == "bad-user-format":
        user = "invalid"
    elif case == "empty-app":
        app = ""
    elif case == "empty-user":
        user = ""
    c = CommunicationIdentityClient.from_connection_string(
        jemu.connection_string, connection_verify=jemu.ca_file
    )
    with pytest.raises(HttpResponseError) as ei:
        c.get_token_for_teams_user(token, app, user)
    assert not isinstance(ei.value, ClientAuthenticationError)
    assert ei.value.status_code == 400
    assert ei.value.error.code == "ValidationError"
    assert ei.value.error.message == message
    assert ei.value.error.target == target
    headers = ei.value.response.headers
    assert headers["Content-Type"] == "application/json"
    if advertised:  # REC wrong_user_object_id: the Teams operation's own, shorter list
        assert headers["api-supported-versions"].startswith(
            "2021-10-31-preview, 2022-06-01, 2022-10-01, 2023-08-01"
        )
        assert "2021-03-07" not in headers["api-supported-versions"]
    else:
        assert "api-supported-versions" not in headers


def test_teams_exchange_without_jwks_is_401(emu: EmulatorProcess) -> None:
    r = signed(
        emu,
        "POST",
        f"/teamsUser/:exchangeAccessToken?api-version={API}",
        {"token": "aad.jwt.token", "appId": "app-id-guid", "userId": "user-oid-guid"},
    )
    assert r.status_code == 401
    assert r.json() == {
        "error": {"code": "InvalidAccessToken", "message": "Provided access token is not valid."}
    }
    assert emu.stats()["requests"]["exchangeTeamsUserAccessToken"] == 1


def test_teams_exchange_success_headers(jemu: EmulatorProcess, rsa_key: rsa.RSAPrivateKey) -> None:
    """REC valid_params: 200, charset on success, the Teams api-supported-versions list."""
    oid = str(uuid.uuid4())
    r = signed(
        jemu,
        "POST",
        "/teamsUser/:exchangeAccessToken?api-version=2022-10-01",
        {"token": teams_token(rsa_key, oid), "appId": APP_ID, "userId": oid},
    )
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.headers["api-supported-versions"].startswith("2021-10-31-preview, 2022-06-01, ")


async def test_teams_exchange_aio(jemu: EmulatorProcess, rsa_key: rsa.RSAPrivateKey) -> None:
    oid = str(uuid.uuid4())
    async with AsyncCommunicationIdentityClient.from_connection_string(
        jemu.connection_string, connection_verify=jemu.ca_file
    ) as c:
        tok = await c.get_token_for_teams_user(teams_token(rsa_key, oid), APP_ID, oid)
    assert jemu.validate(tok.token)["identity"] == f"8:orgid:{oid}"
