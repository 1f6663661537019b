"""The HTTP functions end to end in-process: real Azurite, ACS emulator and issuer."""

from __future__ import annotations

import asyncio
import base64
import json

import jwt
import pytest

from shared.telemetry import round_trips
from tests.calls import call, request
from tests.revoke_clock import aleave_revoke_second

pytestmark = pytest.mark.usefixtures("app_env")
ADMIN = "TokenService.Admin"


async def token_for(issuer, sub="alice", **body):
    return await call("issue_token", request("POST", "token", token=issuer.mint(sub), body=body))


def forge(claims: dict, header: dict, signature: bytes = b"") -> str:
    def seg(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{seg(header)}.{seg(claims)}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


async def test_bindings_indexed_as_the_host_sees_them():
    from tests.calls import INDEXED as functions

    routes = {}
    for name, fn in functions.items():  # the raw bindings the worker sends to the host
        if fn.trigger_type == "httpTrigger":
            routes[name] = (fn.trigger["route"], fn.trigger["methods"],
                            fn.trigger["authLevel"].lower())
    assert routes["issue_token"] == ("token", ["POST"], "anonymous")
    assert routes["delete_user"] == ("users/{userId}", ["DELETE"], "anonymous")
    assert routes["restore_user"] == ("users/{userId}/restore", ["POST"], "anonymous")
    timer = functions["purge_deleted_users"].trigger
    assert timer["type"] == "timerTrigger" and timer["schedule"] == "%PURGE_SCHEDULE%"
    assert functions["on_user_event"].trigger_type == "eventGridTrigger"
    assert set(functions) >= {"issue_token", "get_me", "revoke_me", "delete_me", "revoke_user",
                              "delete_user", "restore_user", "health", "openapi",
                              "exchange_teams_token", "purge_deleted_users", "on_user_event"}


async def test_first_then_repeat_token(issuer, acs):
    status, body, headers = await token_for(issuer)
    assert status == 200, body
    assert set(body) == {"acsUserId", "token", "expiresOn", "scopes"}
    assert body["scopes"] == ["chat", "voip"] and body["expiresOn"].endswith("Z")
    assert headers["Cache-Control"] == "no-store"
    assert acs.validate(body["token"])["identity"] == body["acsUserId"]
    status, again, _ = await token_for(issuer, scopes=["chat.join"], expiresInMinutes=60)
    assert status == 200 and again["acsUserId"] == body["acsUserId"]
    assert again["scopes"] == ["chat.join"]
    assert acs.stats()["requests"]["createIdentity"] == 1


async def test_round_trips_are_exactly_the_budget(issuer):
    assert (await call("health", request("GET", "health")))[0] == 200  # creates the table
    round_trips.reset()
    assert (await token_for(issuer, "rt-user"))[0] == 200
    # one read, claim insert + mapping insert, one createUserAndToken
    assert round_trips.snapshot() == {"tableReads": 1, "tableWrites": 2, "acs": 1}
    round_trips.reset()
    assert (await token_for(issuer, "rt-user"))[0] == 200
    assert round_trips.snapshot() == {"tableReads": 1, "tableWrites": 0, "acs": 1}


async def test_fifty_concurrent_first_requests_make_one_identity(issuer, acs):
    token = issuer.mint("crowd")
    results = await asyncio.gather(*(
        call("issue_token", request("POST", "token", token=token)) for _ in range(50)))
    assert {status for status, _, _ in results} == {200}
    assert len({body["acsUserId"] for _, body, _ in results}) == 1
    stats = acs.stats()
    assert stats["requests"]["createIdentity"] == 1 and stats["identities"] == 1


@pytest.mark.parametrize("case", [
    "none", "garbage", "alg_none", "hs256_public_key", "wrong_issuer", "wrong_audience",
    "expired", "not_yet_valid", "unknown_kid", "tampered", "oversized", "basic_scheme",
    "no_user_claim",
])
async def test_auth_matrix_rejects(issuer, acs, case):
    keys = issuer.keys
    good = issuer.mint("mallory")
    header = jwt.get_unverified_header(good)
    claims = jwt.decode(good, options={"verify_signature": False})
    tokens = {
        "none": None,
        "garbage": "not.a.jwt",
        "alg_none": forge({**claims, "sub": "victim", "oid": "victim"}, {"alg": "none", "typ": "JWT"}),
        "wrong_issuer": issuer.mint("mallory", issuer="https://evil.example"),
        "wrong_audience": issuer.mint("mallory", audience="api://other"),
        "expired": issuer.mint("mallory", minutes=-10),
        "not_yet_valid": issuer.mint("mallory", extra_claims={"nbf": claims["iat"] + 3600}),
        "unknown_kid": issuer.mint("mallory", headers={"kid": "forged-kid"}),
        "tampered": good.split(".")[0] + "." + forge({**claims, "oid": "victim"}, header).split(".")[1]
                    + "." + good.split(".")[2],
        "oversized": issuer.mint("mallory", extra_claims={"pad": "x" * 9000}),
        "no_user_claim": issuer.mint("mallory", extra_claims={"sub": None, "oid": None}),
    }
    if case == "hs256_public_key":
        from cryptography.hazmat.primitives import serialization

        public = keys.rsa_private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        import hashlib
        import hmac

        head = {"alg": "HS256", "typ": "JWT", "kid": header["kid"]}
        unsigned = forge(claims, head).rsplit(".", 1)[0]
        sig = hmac.new(public, unsigned.encode(), hashlib.sha256).digest()
        tokens[case] = unsigned + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    headers = {"authorization": f"Basic {good}"} if case == "basic_scheme" else None
    status, body, resp_headers = await call("issue_token", request(
        "POST", "token", token=tokens.get(case), headers=headers))
    assert status == 401, (case, body)
    assert body["error"]["code"] == "unauthenticated"
    assert resp_headers["WWW-Authenticate"].startswith("Bearer")
    assert acs.stats()["requests"]["createIdentity"] == 0


async def test_es256_tokens_accepted(issuer):
    status, body, _ = await call("issue_token", request(
        "POST", "token", token=issuer.mint("ec-user", alg="ES256")))
    assert status == 200, body


async def test_client_principal_header_ignored_in_jwt_mode():
    principal = base64.b64encode(json.dumps({"claims": [{"typ": "oid", "val": "victim"}]}).encode())
    status, _, _ = await call("issue_token", request(
        "POST", "token", headers={"x-ms-client-principal": principal.decode()}))
    assert status == 401


async def test_users_act_only_on_themselves_admin_needs_role(issuer, acs):
    assert (await token_for(issuer, "victim"))[0] == 200
    mallory = issuer.mint("mallory")
    for name, method, path in [("revoke_user", "POST", "users/victim/revoke"),
                               ("delete_user", "DELETE", "users/victim"),
                               ("restore_user", "POST", "users/victim/restore"),
                               ("get_user", "GET", "users/victim")]:
        status, body, _ = await call(name, request(method, path, token=mallory,
                                                   route_params={"userId": "victim"}))
        assert status == 403, (name, body)
    assert (await call("get_me", request("GET", "me", token=issuer.mint("victim"))))[1]["state"] == "active"
    admin = issuer.mint("root", roles=[ADMIN])
    status, body, _ = await call("get_user", request("GET", "users/victim", token=admin,
                                                     route_params={"userId": "victim"}))
    assert status == 200 and body["state"] == "active"


@pytest.mark.parametrize(("raw", "ctype", "status", "fragment"), [
    (b"{", "application/json", 400, "not valid JSON"),
    (b"[1]", "application/json", 400, "JSON object"),
    (b'{"scopes": "chat"}', "application/json", 400, "scopes"),
    (b'{"scopes": []}', "application/json", 400, "scopes"),
    (b'{"scopes": ["chat", "root"]}', "application/json", 400, "unknown scope"),
    (b'{"scopes": ["voip.join"]}', "application/json", 403, "not allowed"),
    (b'{"expiresInMinutes": 59}', "application/json", 400, "expiresInMinutes"),
    (b'{"expiresInMinutes": 1441}', "application/json", 400, "expiresInMinutes"),
    (b'{"expiresInMinutes": "60"}', "application/json", 400, "expiresInMinutes"),
    (b'{"expiresInMinutes": true}', "application/json", 400, "expiresInMinutes"),
    (b'{"expiresInMinutes": 60.5}', "application/json", 400, "expiresInMinutes"),
    (b'{"expiresInMinutes": NaN}', "application/json", 400, "not valid JSON"),
    (b'{"scopes": ["chat"], "scopes": ["voip"]}', "application/json", 400, "duplicate"),
    (b'{"admin": true}', "application/json", 400, "unknown field"),
    (b"[" * 5000 + b"]" * 5000, "application/json", 400, "nested"),
    (b"\xff\xfe", "application/json", 400, "UTF-8"),
    (b"scopes=chat", "application/x-www-form-urlencoded", 415, "application/json"),
    (b'{"scopes": ["chat"]}' + b" " * 20000, "application/json", 413, "at most"),
])
async def test_bad_token_requests_get_clear_4xx(issuer, acs, raw, ctype, status, fragment):
    got, body, _ = await call("issue_token", request(
        "POST", "token", token=issuer.mint("picky"), raw=raw, headers={"content-type": ctype}))
    assert got == status, body
    assert fragment.lower() in body["error"]["message"].lower()
    assert acs.stats()["requests"]["createIdentity"] == 0


@pytest.mark.parametrize("user_id", ["a\x00b", "x" * 2048, "tab\tid"])
async def test_bad_path_user_ids_are_400(issuer, user_id):
    admin = issuer.mint("root", roles=[ADMIN])
    status, body, _ = await call("revoke_user", request(
        "POST", "users/x/revoke", token=admin, route_params={"userId": user_id}))
    assert status == 400 and body["error"]["target"] == "userId"


@pytest.mark.parametrize("user_id", ["a/b", "back\\slash", "hash#tag", "what?", "ünï 🙂"])
async def test_unusual_ids_work_end_to_end(issuer, acs, user_id):
    status, body, _ = await call("issue_token", request("POST", "token", token=issuer.mint(user_id)))
    assert status == 200, body
    admin = issuer.mint("root", roles=[ADMIN])
    param = user_id if "/" not in user_id else "b64." + base64.urlsafe_b64encode(
        user_id.encode()).decode().rstrip("=")
    status, me, _ = await call("get_user", request("GET", "users/x", token=admin,
                                                   route_params={"userId": param}))
    assert status == 200 and me["acsUserId"] == body["acsUserId"]


async def test_me_revoke_and_delete_flow(issuer, acs):
    alice = issuer.mint("alice")
    assert (await call("get_me", request("GET", "me", token=alice)))[0] == 404
    assert (await call("revoke_me", request("POST", "me/revoke", token=alice)))[0] == 404
    _, first, _ = await token_for(issuer)
    status, _, _ = await call("revoke_me", request("POST", "me/revoke", token=alice))
    assert status == 204 and not acs.validate(first["token"])["valid"]
    await aleave_revoke_second()  # a same-second token's fate on Azure is unknown
    _, second, _ = await token_for(issuer)
    assert acs.validate(second["token"])["valid"]
    status, body, _ = await call("delete_me", request("DELETE", "me", token=alice))
    assert status == 202 and body["state"] == "deleting" and "purgeAfter" in body
    assert not acs.validate(second["token"])["valid"]
    status, body, _ = await token_for(issuer)
    assert status == 410 and body["error"]["code"] == "user_deleted"
    assert (await call("revoke_me", request("POST", "me/revoke", token=alice)))[0] == 410


async def test_health_and_openapi():
    status, body, _ = await call("health", request("GET", "health"))
    assert (status, body) == (200, {"status": "ok"})
    status, doc, _ = await call("openapi", request("GET", "openapi.json"))
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert "/token" in doc["paths"]


async def test_misconfiguration_is_a_generic_503(monkeypatch, issuer, caplog):
    from shared import runtime

    monkeypatch.delenv("AUTH_AUDIENCE")
    await runtime.reset()
    status, body, headers = await token_for(issuer)
    assert status == 503 and body["error"]["message"] == "service is not configured"
    assert body["error"]["retryAfterSeconds"] == int(headers["Retry-After"])
    assert "AUTH_AUDIENCE" in caplog.text
    status, _, _ = await call("health", request("GET", "health"))
    assert status == 503


async def test_acs_throttling_and_outage_reach_callers_as_429_and_503(issuer, acs):
    assert (await token_for(issuer, "busy"))[0] == 200
    acs.set_faults(fault={"operation": "issueAccessToken", "status": 429, "count": 3,
                          "retryAfterSeconds": 20})
    status, body, headers = await token_for(issuer, "busy")
    assert status == 429 and headers["Retry-After"] == "20"
    # Browsers cannot read Retry-After cross-origin on Azure: the body carries the same wait.
    assert body["error"]["retryAfterSeconds"] == 20
    acs.clear_faults()
    acs.set_faults(fault={"operation": "issueAccessToken", "status": 503, "count": 10})
    status, body, headers = await token_for(issuer, "busy")
    assert status == 503 and "Retry-After" in headers and "Traceback" not in json.dumps(body)
    assert body["error"]["retryAfterSeconds"] == int(headers["Retry-After"])
    acs.clear_faults()
    assert (await token_for(issuer, "busy"))[0] == 200


async def test_teams_exchange_endpoint(issuer, acs):
    # GUID ids, as Entra issues them: the real service answers 400 "Provided AppId has invalid
    # format." otherwise (Azure/azure-sdk-for-python .../recordings/test_communication_identity_
    # client.pyTestClienttest_get_token_for_teams_user_with_invalid_client_id[invalid_client_id-
    # invalid].json), and a wrong app is a 400 too (..._with_wrong_client_id.json).
    oid, app = "3c1a9e2b-7d4f-4b6a-8e0c-2f5d9a1b7c3e", "8e2f4a6c-1b3d-4c5e-9f7a-0b2d4e6f8a1c"
    entra = issuer.mint_teams(oid=oid, appid=app)
    me = issuer.mint(oid)
    status, body, _ = await call("exchange_teams_token", request(
        "POST", "token/teams", token=me, body={"token": entra, "appId": app, "userId": oid}))
    assert status == 200 and acs.validate(body["token"])["valid"]
    status, _, _ = await call("exchange_teams_token", request(
        "POST", "token/teams", token=issuer.mint("someone-else"),
        body={"token": entra, "appId": app, "userId": oid}))
    assert status == 403
    for wrong_app in ("wrong", "0f0e0d0c-0b0a-4909-8807-060504030201"):
        status, body, _ = await call("exchange_teams_token", request(
            "POST", "token/teams", token=me,
            body={"token": entra, "appId": wrong_app, "userId": oid}))
        assert status == 400 and body["error"]["code"] == "acs_rejected"
    status, body, _ = await call("exchange_teams_token", request(
        "POST", "token/teams", token=me, body={"token": entra}))
    assert status == 400 and body["error"]["target"] == "appId"


def principal(user: str, roles: tuple[str, ...] = ()) -> str:
    claims = [{"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": user}]
    claims += [{"typ": "roles", "val": role} for role in roles]
    body = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(body).encode()).decode()


async def test_easyauth_mode_uses_the_platform_principal(monkeypatch, acs):
    from shared import runtime

    monkeypatch.setenv("AUTH_MODE", "easyauth")
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    await runtime.reset()
    status, body, _ = await call("issue_token", request(
        "POST", "token", headers={"x-ms-client-principal": principal("easy-user")}))
    assert status == 200, body
    status, me, _ = await call("get_me", request(
        "GET", "me", headers={"x-ms-client-principal": principal("easy-user")}))
    assert status == 200 and me["acsUserId"] == body["acsUserId"]
    assert (await call("issue_token", request("POST", "token")))[0] == 401
    status, _, _ = await call("get_user", request(
        "GET", "users/easy-user", headers={"x-ms-client-principal": principal("easy-user")},
        route_params={"userId": "easy-user"}))
    assert status == 403
    status, _, _ = await call("get_user", request(
        "GET", "users/easy-user", route_params={"userId": "easy-user"},
        headers={"x-ms-client-principal": principal("ops", ("TokenService.Admin",))}))
    assert status == 200
    bad = base64.b64encode(b"{not json").decode()
    assert (await call("issue_token", request(
        "POST", "token", headers={"x-ms-client-principal": bad})))[0] == 401


async def test_easyauth_refused_without_app_service_authentication(monkeypatch):
    from shared import runtime

    monkeypatch.setenv("AUTH_MODE", "easyauth")
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    await runtime.reset()
    status, body, _ = await call("issue_token", request(
        "POST", "token", headers={"x-ms-client-principal": principal("forger")}))
    assert status == 503 and body["error"]["code"] == "misconfigured"
