"""Interactive sign-in on the running issuer: authorization code + PKCE (S256) for public clients.

Expected behaviour is the standards' (RFC 6749 §4.1 and §5.2, RFC 7636 §4.4.1 and §4.6, OpenID
Connect Core §3.1.2.6 and §3.1.3.7) and Entra ID's for a "Single-page application" redirect URI
(exact redirect URI match, PKCE, cross-origin token redemption from the SPA's origin).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
import pytest
import requests

from localdev.cors import normalise_origin, parse_cors
from localdev.issuer import IssuerProcess, IssuerServer
from shared.auth import JwtAuthenticator
from shared.config import load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENT = "web-spa"
REDIRECT = "http://localhost:5173/callback"
SECOND_REDIRECT = "http://localhost:5173/other-callback"
OTHER_CLIENT = "cli-tool"
OTHER_REDIRECT = "http://127.0.0.1:8400/cb"
API_SCOPE = "api://acs-token-service/Token.Issue"
PUBLIC_CLIENTS = {CLIENT: [REDIRECT, SECOND_REDIRECT], OTHER_CLIENT: [OTHER_REDIRECT]}


@pytest.fixture(scope="module")
def spa_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IssuerProcess]:
    """The CLI issuer (``serve --public-client ...``) with two registered public clients."""
    with IssuerProcess(
        tmp_path_factory.mktemp("spa-issuer"), public_clients=PUBLIC_CLIENTS
    ) as iss:
        yield iss


def _pkce() -> tuple[str, str]:
    """RFC 7636 §4.1/§4.2, computed here rather than with the server's library."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _authorize_params(challenge: str, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": CLIENT,
        "redirect_uri": REDIRECT,
        "scope": f"openid profile {API_SCOPE}",
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(extra)
    return {k: v for k, v in params.items() if v != ""}


def _authorize(
    http: requests.Session, issuer: IssuerProcess | IssuerServer, params: dict[str, str]
) -> requests.Response:
    return http.get(
        issuer.issuer + "/authorize", params=params, allow_redirects=False, timeout=10
    )


def _redirect_query(resp: requests.Response, redirect_uri: str = REDIRECT) -> dict[str, str]:
    assert resp.status_code == 302, resp.text
    location = resp.headers["Location"]
    assert location.split("?", 1)[0] == redirect_uri
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _code(
    http: requests.Session, issuer: IssuerProcess | IssuerServer, user: str = "alice"
) -> tuple[str, str, dict[str, str]]:
    verifier, challenge = _pkce()
    params = _authorize_params(challenge, login_hint=user)
    query = _redirect_query(_authorize(http, issuer, params))
    assert query["state"] == params["state"]
    return query["code"], verifier, params


def _redeem(
    http: requests.Session,
    issuer: IssuerProcess | IssuerServer,
    code: str,
    verifier: str | None,
    **overrides: str,
) -> requests.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier or "",
        "client_id": CLIENT,
        "redirect_uri": REDIRECT,
    }
    form.update(overrides)
    return http.post(
        issuer.issuer + "/token", data={k: v for k, v in form.items() if v}, timeout=10
    )


def _verify(token: str, issuer: IssuerProcess | IssuerServer, audience: str) -> dict[str, Any]:
    key = jwt.PyJWKClient(issuer.jwks_uri, cache_keys=False).get_signing_key_from_jwt(token)
    return jwt.decode(
        token, key.key, algorithms=["RS256", "ES256"], audience=audience, issuer=issuer.issuer
    )


def _oauth_error(resp: requests.Response, error: str) -> None:
    assert resp.status_code in (400, 401), resp.text
    assert resp.json()["error"] == error, resp.text
    assert "access_token" not in resp.text


class _Form(HTMLParser):
    """The inputs, the form and the button of the sign-in page, as a browser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, str]] = []
        self.inputs: list[dict[str, str]] = []
        self.buttons: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(values)
        elif tag == "input":
            self.inputs.append(values)
        elif tag == "button":
            self.buttons.append(values)


def _parse_form(text: str) -> _Form:
    parser = _Form()
    parser.feed(text)
    return parser


# ------------------------------------------------------------------------------ discovery


def test_discovery_lists_the_code_flow(spa_issuer: IssuerProcess, http: requests.Session) -> None:
    doc = http.get(spa_issuer.discovery_url, timeout=10).json()
    assert doc["authorization_endpoint"] == spa_issuer.issuer + "/authorize"
    assert doc["token_endpoint"] == spa_issuer.issuer + "/token"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["response_types_supported"] == ["code"]
    assert {"authorization_code", "client_credentials"} <= set(doc["grant_types_supported"])
    assert "none" in doc["token_endpoint_auth_methods_supported"]
    info = json.loads((spa_issuer.data_dir / "issuer.json").read_text())
    assert info["publicClients"] == PUBLIC_CLIENTS
    assert info["authorizationEndpoint"] == spa_issuer.authorization_endpoint


# ------------------------------------------------------------------------------ happy paths


def test_login_hint_signs_in_at_once_and_tokens_verify(
    spa_issuer: IssuerProcess, http: requests.Session
) -> None:
    code, verifier, params = _code(http, spa_issuer, "alice")
    resp = _redeem(http, spa_issuer, code, verifier)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Cache-Control"] == "no-store"  # RFC 6749 §5.1
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] > 0
    access = _verify(body["access_token"], spa_issuer, spa_issuer.audience)
    assert (access["sub"], access["oid"], access["azp"]) == ("alice", "alice", CLIENT)
    assert access["scp"] == "Token.Issue"  # Entra: only the API scope's name, no OIDC scopes
    assert "roles" not in access
    identity = _verify(body["id_token"], spa_issuer, CLIENT)  # OIDC Core §3.1.3.7: aud=client
    assert identity["sub"] == "alice"
    assert identity["nonce"] == params["nonce"]


def test_form_sign_in_with_admin_role(spa_issuer: IssuerProcess, http: requests.Session) -> None:
    verifier, challenge = _pkce()
    state = '"><script>alert(1)</script>&x'
    params = _authorize_params(challenge, state=state)
    page = _authorize(http, spa_issuer, params)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "<script>alert" not in page.text  # everything echoed is escaped
    form = _parse_form(page.text)
    [form_tag] = form.forms
    assert form_tag["method"] == "post"
    assert form_tag["action"] == spa_issuer.issuer + "/authorize"
    by_id = {i["id"]: i for i in form.inputs if "id" in i}
    assert by_id["login"]["name"] == "login"
    assert (by_id["admin"]["type"], by_id["admin"]["name"], by_id["admin"]["value"]) == (
        "checkbox", "admin", "1",
    )  # fmt: skip
    [button] = form.buttons
    assert (button["id"], button["type"]) == ("approve", "submit")
    hidden = {i["name"]: i["value"] for i in form.inputs if i.get("type") == "hidden"}
    assert hidden["state"] == state  # carried through unchanged (HTML-unescaped by the parser)
    assert hidden["code_challenge"] == challenge

    # What the browser posts when the user types "bob" and ticks the admin box.
    answer = http.post(
        form_tag["action"], data={**hidden, "login": "bob", "admin": "1"},
        allow_redirects=False, timeout=10,
    )  # fmt: skip
    query = _redirect_query(answer)
    assert query["state"] == state
    tokens = _redeem(http, spa_issuer, query["code"], verifier).json()
    access = _verify(tokens["access_token"], spa_issuer, spa_issuer.audience)
    assert (access["sub"], access["oid"]) == ("bob", "bob")
    assert access["roles"] == ["TokenService.Admin"]


def test_form_without_a_user_id_is_shown_again(
    spa_issuer: IssuerProcess, http: requests.Session
) -> None:
    _, challenge = _pkce()
    hidden = _authorize_params(challenge)
    resp = http.post(
        spa_issuer.authorization_endpoint, data={**hidden, "login": "  "},
        allow_redirects=False, timeout=10,
    )  # fmt: skip
    assert resp.status_code == 400
    assert "Location" not in resp.headers
    assert "Enter a user id" in resp.text
    assert {i.get("id") for i in _parse_form(resp.text).inputs} >= {"login", "admin"}


async def test_the_service_accepts_the_access_token(
    spa_issuer: IssuerProcess, http: requests.Session
) -> None:
    """shared.auth (the service's own validator) with the issuer's audience and JWKS.
    (Header names arrive lower-cased, as func.HttpRequest gives them.)"""
    settings = load_settings(
        {
            "COMMUNICATION_SERVICES_CONNECTION_STRING": "endpoint=https://x/;accesskey=eA==",
            "IDENTITY_TABLE_CONNECTION": "UseDevelopmentStorage=true",
            "AUTH_ISSUER": spa_issuer.issuer,
            "AUTH_AUDIENCE": spa_issuer.audience,
        }
    )

    async with aiohttp.ClientSession(trust_env=False) as session:

        async def fetch(url: str) -> Any:
            async with session.get(url) as resp:
                resp.raise_for_status()
                return await resp.json()

        auth = JwtAuthenticator(settings, fetch)
        user_code, user_verifier, _ = _code(http, spa_issuer, "carol")
        user_token = _redeem(http, spa_issuer, user_code, user_verifier).json()["access_token"]
        caller = await auth.authenticate({"authorization": f"Bearer {user_token}"})
        assert (caller.user_id, caller.is_admin) == ("carol", False)

        admin_verifier, admin_challenge = _pkce()
        params = _authorize_params(admin_challenge, login_hint="dave", admin="1")
        query = _redirect_query(_authorize(http, spa_issuer, params))
        admin_token = _redeem(http, spa_issuer, query["code"], admin_verifier).json()
        caller = await auth.authenticate(
            {"authorization": f"Bearer {admin_token['access_token']}"}
        )
        assert (caller.user_id, caller.is_admin) == ("dave", True)


# -------------------------------------------------------------------------- token refusals


def test_wrong_verifier_is_invalid_grant(spa_issuer: IssuerProcess, http: requests.Session) -> None:
    code, _, _ = _code(http, spa_issuer)
    other_verifier, _ = _pkce()
    _oauth_error(_redeem(http, spa_issuer, code, other_verifier), "invalid_grant")  # 7636 §4.6


def test_missing_verifier_is_invalid_request(
    spa_issuer: IssuerProcess, http: requests.Session
) -> None:
    code, _, _ = _code(http, spa_issuer)
    _oauth_error(_redeem(http, spa_issuer, code, None), "invalid_request")


def test_a_code_is_single_use(spa_issuer: IssuerProcess, http: requests.Session) -> None:
    code, verifier, _ = _code(http, spa_issuer)
    assert _redeem(http, spa_issuer, code, verifier).status_code == 200
    _oauth_error(_redeem(http, spa_issuer, code, verifier), "invalid_grant")  # 6749 §4.1.2


def test_a_failed_redemption_burns_the_code(
    spa_issuer: IssuerProcess, http: requests.Session
) -> None:
    code, verifier, _ = _code(http, spa_issuer)
    wrong, _ = _pkce()
    _oauth_error(_redeem(http, spa_issuer, code, wrong), "invalid_grant")
    _oauth_error(_redeem(http, spa_issuer, code, verifier), "invalid_grant")


def test_an_expired_code_is_invalid_grant(tmp_path: Path, http: requests.Session) -> None:
    # A zero lifetime makes every code expired at redemption, without waiting for a clock.
    with IssuerServer(
        tmp_path / "issuer", public_clients=PUBLIC_CLIENTS, code_lifetime=0
    ) as iss:
        code, verifier, _ = _code(http, iss)
        _oauth_error(_redeem(http, iss, code, verifier), "invalid_grant")


def test_redirect_uri_must_match_the_authorize_request(
    spa_issuer: IssuerProcess, http: requests.Session
) -> None:
    code, verifier, _ = _code(http, spa_issuer)  # authorized for REDIRECT
    resp = _redeem(http, spa_issuer, code, verifier, redirect_uri=SECOND_REDIRECT)
    _oauth_error(resp, "invalid_grant")  # 6749 §4.1.3: registered, but not the one used
    code, verifier, _ = _code(http, spa_issuer)
    resp = _redeem(http, spa_issuer, code, verifier, redirect_uri="http://localhost:5173/evil")
    _oauth_error(resp, "invalid_grant")


def test_unknown_client_at_the_token_endpoint_is_invalid_client(
    spa_issuer: IssuerProcess, http: requests.Session
) -> None:
    code, verifier, _ = _code(http, spa_issuer)
    _oauth_error(_redeem(http, spa_issuer, code, verifier, client_id="nobody"), "invalid_client")


def test_another_clients_code_is_invalid_grant(
    spa_issuer: IssuerProcess, http: requests.Session
) -> None:
    code, verifier, _ = _code(http, spa_issuer)
    resp = _redeem(
        http, spa_issuer, code, verifier, client_id=OTHER_CLIENT, redirect_uri=OTHER_REDIRECT
    )
    _oauth_error(resp, "invalid_grant")


# ---------------------------------------------------------------------- authorize refusals


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"client_id": "nobody"}, "unknown client"),
        ({"redirect_uri": "http://localhost:5173/not-registered"}, "unregistered redirect URI"),
        ({"redirect_uri": OTHER_REDIRECT}, "another client's redirect URI"),
        ({"redirect_uri": ""}, "no redirect URI"),
    ],
)
def test_untrusted_client_or_redirect_gets_an_error_page_not_a_redirect(
    spa_issuer: IssuerProcess, http: requests.Session, change: dict[str, str], why: str
) -> None:
    # RFC 6749 §4.1.2.1: "the authorization server SHOULD inform the resource owner of the
    # error and MUST NOT automatically redirect the user-agent to the invalid redirection URI".
    _, challenge = _pkce()
    resp = _authorize(http, spa_issuer, _authorize_params(challenge, login_hint="eve", **change))
    assert resp.status_code == 400, why
    assert "Location" not in resp.headers, why
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "invalid_" in resp.text


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge": "", "code_challenge_method": ""}, "invalid_request"),
        ({"code_challenge_method": ""}, "invalid_request"),  # RFC 7636 default: plain
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
def test_bad_request_from_a_trusted_client_is_redirected_with_the_error(
    spa_issuer: IssuerProcess, http: requests.Session, change: dict[str, str], error: str
) -> None:
    # RFC 6749 §4.1.2.1: other errors go back to the (valid) redirect URI with error and state.
    _, challenge = _pkce()
    params = _authorize_params(challenge, login_hint="eve", **change)
    query = _redirect_query(_authorize(http, spa_issuer, params))
    assert query["error"] == error
    assert query["state"] == params["state"]
    assert "code" not in query


def test_a_non_loopback_host_header_is_refused_not_a_500(
    spa_issuer: IssuerProcess, http: requests.Session
) -> None:
    # authlib accepts plain http only for loopback (RFC 8252 §7.3); a rebinding-style Host
    # header gets OAuth's insecure_transport, never a server error.
    verifier, challenge = _pkce()
    page = http.get(
        spa_issuer.authorization_endpoint,
        params=_authorize_params(challenge, login_hint="eve"),
        headers={"Host": "evil.example"},
        allow_redirects=False,
        timeout=10,
    )
    assert page.status_code == 400
    assert "Location" not in page.headers
    assert "insecure_transport" in page.text
    code, verifier, _ = _code(http, spa_issuer)
    resp = http.post(
        spa_issuer.token_endpoint,
        data={"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
              "client_id": CLIENT, "redirect_uri": REDIRECT},
        headers={"Host": "evil.example"},
        timeout=10,
    )  # fmt: skip
    _oauth_error(resp, "insecure_transport")


# ------------------------------------------------------------------------------------ CORS


def test_the_spa_origin_may_call_token_discovery_and_jwks(
    spa_issuer: IssuerProcess, http: requests.Session
) -> None:
    origin = "http://localhost:5173"
    pre = http.options(
        spa_issuer.token_endpoint,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=10,
    )
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == origin
    assert "content-type" in pre.headers["Access-Control-Allow-Headers"].lower()
    code, verifier, _ = _code(http, spa_issuer)
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
            "client_id": CLIENT, "redirect_uri": REDIRECT}  # fmt: skip
    resp = http.post(spa_issuer.token_endpoint, data=form, headers={"Origin": origin}, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == origin
    for url in (spa_issuer.discovery_url, spa_issuer.jwks_uri):
        got = http.get(url, headers={"Origin": origin}, timeout=10)
        assert got.headers["Access-Control-Allow-Origin"] == origin, url


def test_other_origins_get_no_cors_headers(
    spa_issuer: IssuerProcess, http: requests.Session
) -> None:
    for origin in ("http://evil.example", "http://localhost:5174"):
        pre = http.options(
            spa_issuer.token_endpoint,
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            timeout=10,
        )
        assert pre.status_code == 204
        assert "Access-Control-Allow-Origin" not in pre.headers
        got = http.get(spa_issuer.discovery_url, headers={"Origin": origin}, timeout=10)
        assert "Access-Control-Allow-Origin" not in got.headers


CORS_HEADERS = (
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Credentials",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Headers",
)


def _no_cors(resp: requests.Response, what: str) -> None:
    present = [h for h in CORS_HEADERS if h in resp.headers]
    assert not present, f"{what}: {present}"


def test_the_spa_origin_cannot_read_a_client_credentials_token(
    spa_issuer: IssuerProcess, http: requests.Session
) -> None:
    """Security: a page on the SPA's origin must not read an admin token minted for any ``sub``
    by the dev-only client-credentials grant; only the sign-in (code) grant is cross-origin."""
    origin = "http://localhost:5173"
    form = {"grant_type": "client_credentials", "client_id": CLIENT, "sub": "victim",
            "roles": "TokenService.Admin"}  # fmt: skip
    resp = http.post(spa_issuer.token_endpoint, data=form, headers={"Origin": origin}, timeout=10)
    assert resp.status_code == 200  # the grant itself still works for same-origin tools
    _no_cors(resp, "client_credentials")
    bad = http.post(
        spa_issuer.token_endpoint,
        data={"grant_type": "password"},
        headers={"Origin": origin},
        timeout=10,
    )
    assert bad.status_code == 400
    _no_cors(bad, "unsupported grant")


def test_the_spa_origin_gets_no_cors_on_msi_and_admin_routes(
    tmp_path: Path, http: requests.Session
) -> None:
    origin = "http://localhost:5173"
    with IssuerServer(tmp_path / "iss", public_clients=PUBLIC_CLIENTS) as iss:
        msi = http.get(
            iss.identity_endpoint,
            params={"api-version": "2019-08-01", "resource": "https://communication.azure.com"},
            headers={"Origin": origin, "X-IDENTITY-HEADER": iss.identity_header},
            timeout=10,
        )
        assert msi.status_code == 200
        _no_cors(msi, "/msi/token")
        for method, path in (
            ("GET", "/_issuer/stats"),
            ("POST", "/_issuer/stats/reset"),
            ("POST", "/_issuer/rotate"),
            ("GET", "/_issuer/info"),
        ):
            got = http.request(method, iss.issuer + path, headers={"Origin": origin}, timeout=10)
            assert got.status_code == 200, path
            _no_cors(got, path)
            pre = http.options(
                iss.issuer + path,
                headers={"Origin": origin, "Access-Control-Request-Method": method},
                timeout=10,
            )
            _no_cors(pre, f"preflight {path}")
        pre = http.options(
            iss.identity_endpoint,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "x-identity-header",
            },
            timeout=10,
        )
        _no_cors(pre, "preflight /msi/token")


@pytest.mark.parametrize(
    ("value", "origin"),
    [
        ("http://localhost:80", "http://localhost"),
        ("https://App.Example:443/", "https://app.example"),
        ("http://LOCALHOST:5173", "http://localhost:5173"),
        ("https://app.example:80", "https://app.example:80"),  # not https's default port
        ("http://[::1]:80", "http://[::1]"),
    ],
)
def test_normalise_origin_is_what_a_browser_sends(value: str, origin: str) -> None:
    assert normalise_origin(value) == origin


def test_host_cors_keeps_an_explicit_default_port_like_aspnet_core() -> None:
    """ASP.NET Core's CorsPolicyBuilder.GetNormalizedOrigin only lower-cases a non-IDN origin
    (dotnet/aspnetcore src/Middleware/CORS/src/Infrastructure/CorsPolicyBuilder.cs)."""
    policy = parse_cors("http://LocalHost:80")
    assert policy is not None and policy.origins == frozenset({"http://localhost:80"})


def test_a_redirect_uri_with_a_default_port_gives_the_browsers_origin(
    tmp_path: Path, http: requests.Session
) -> None:
    """A browser on http://localhost:80/cb sends ``Origin: http://localhost`` (no default
    port): that origin may redeem its code."""
    clients = {CLIENT: ["http://localhost:80/cb", "https://App.Example:443/cb"]}
    with IssuerServer(tmp_path / "iss", public_clients=clients) as iss:
        for origin in ("http://localhost", "https://app.example"):
            pre = http.options(
                iss.token_endpoint,
                headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
                timeout=10,
            )
            assert pre.headers.get("Access-Control-Allow-Origin") == origin, origin
        pre = http.options(
            iss.token_endpoint,
            headers={"Origin": "http://localhost:80", "Access-Control-Request-Method": "POST"},
            timeout=10,
        )
        assert "Access-Control-Allow-Origin" not in pre.headers  # never sent by a browser


# ------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    "value", ["no-equals-sign", "=http://localhost/cb", "spa=not-a-url", "spa=http://h/cb#frag"]
)
def test_cli_refuses_a_malformed_public_client(tmp_path: Path, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "localdev.issuer", "serve", "--data-dir", str(tmp_path),
         "--public-client", value],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--public-client" in result.stderr
