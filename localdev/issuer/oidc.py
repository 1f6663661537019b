"""Interactive sign-in on the local issuer: OIDC authorization code + PKCE (S256) for public
clients (single-page and native apps), the way Entra ID serves a "Single-page application"
registration.

authlib's generic authorization server does the protocol: request validation, the RFC 6749
§4.1.2.1 rule of when an error may be redirected, the OAuth error codes and the RFC 7636 check
of the verifier. This module supplies what authlib leaves to the framework: the aiohttp request
adapter, in-memory single-use codes, the client registry and the tokens (minted with the
issuer's own keys, so every verifier that trusts its JWKS accepts them).
"""

from __future__ import annotations

import html
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from aiohttp import web
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    AuthorizationServer,
    ClientMixin,
    InvalidRequestError,
    OAuth2Payload,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc7636 import CodeChallenge

from ..cors import CorsPolicy, normalise_origin
from .keys import IssuerKeys

__all__ = [
    "ADMIN_ROLE",
    "CODE_LIFETIME_SECONDS",
    "OidcProvider",
    "PublicClient",
    "parse_public_client",
]

ADMIN_ROLE = "TokenService.Admin"  # the service's AUTH_ADMIN_ROLE default
CODE_LIFETIME_SECONDS = 60.0
TOKEN_MINUTES = 60
# Scopes that ask for the sign-in itself (id_token, profile), not for access to the API.
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
MAX_USER_ID = 128
AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "prompt",
    "admin",
)


def _redirect_uri_problem(uri: str) -> str | None:
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http(s) URL"
    if parts.fragment:
        return "must not have a fragment"
    return None


def parse_public_client(text: str) -> tuple[str, str]:
    """``CLIENT_ID=REDIRECT_URI`` (the ``--public-client`` option) -> (client_id, uri)."""
    client_id, sep, uri = text.partition("=")
    client_id, uri = client_id.strip(), uri.strip()
    if not sep or not client_id or not uri:
        raise ValueError(f"--public-client {text!r}: expected CLIENT_ID=REDIRECT_URI")
    problem = _redirect_uri_problem(uri)
    if problem:
        raise ValueError(f"--public-client {text!r}: the redirect URI {problem}")
    return client_id, uri


def _origin(uri: str) -> str:
    """The origin a browser sends from a page at this redirect URI (default port dropped)."""
    parts = urlsplit(uri)
    return normalise_origin(f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}")


@dataclass(frozen=True)
class PublicClient(ClientMixin):  # type: ignore[misc]
    """A registered public client: no secret, code flow only, exact redirect URI match."""

    client_id: str
    redirect_uris: tuple[str, ...]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # redirect_uri is required, as Entra ID requires it for SPAs

    def get_allowed_scope(self, scope: str | None) -> str:
        return scope or ""

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass(frozen=True)
class SignedInUser:
    user_id: str
    admin: bool


@dataclass(frozen=True)
class IssuedCode(AuthorizationCodeMixin):  # type: ignore[misc]
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: SignedInUser
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in items:
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class _Request(OAuth2Request):  # type: ignore[misc]
    """An aiohttp request, its query or form already read, as authlib sees it."""

    def __init__(self, request: web.Request, items: Sequence[tuple[str, str]]) -> None:
        super().__init__(request.method, str(request.url), headers=dict(request.headers))
        self.payload = _Payload(items)

    @property
    def args(self) -> dict[str, str]:
        return self.payload.data

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data


class S256Only(CodeChallenge):  # type: ignore[misc]
    """PKCE required, and only S256: "plain" (the RFC 7636 default) exposes the verifier."""

    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("'code_challenge' is required (PKCE, RFC 7636)")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be 'S256'")
        super().validate_code_challenge(grant, redirect_uri)


class _CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["none"]

    @property
    def provider(self) -> OidcProvider:
        server: _Server = self.server
        return server.provider

    def save_authorization_code(self, code: str, request: _Request) -> None:
        data = request.payload.data
        self.provider.codes[code] = IssuedCode(
            code=code,
            client_id=request.client.client_id,
            redirect_uri=data["redirect_uri"],
            scope=request.scope or "",
            user=request.user,
            nonce=data.get("nonce"),
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            expires_at=time.monotonic() + self.provider.code_lifetime,
        )

    def query_authorization_code(self, code: str, client: PublicClient) -> IssuedCode | None:
        # Popped at the first attempt, whatever its outcome: a code is good for one try.
        found = self.provider.codes.pop(code, None)
        if found is None or found.client_id != client.client_id:
            return None
        if time.monotonic() >= found.expires_at:
            return None
        return found

    def delete_authorization_code(self, authorization_code: IssuedCode) -> None:
        self.provider.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: IssuedCode) -> SignedInUser:
        return authorization_code.user


class _Server(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, provider: OidcProvider) -> None:
        super().__init__()
        self.provider = provider

    def query_client(self, client_id: str) -> PublicClient | None:
        return self.provider.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Tokens are self-contained JWTs; nothing to store."""

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        assert isinstance(request, OAuth2Request)
        return request

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signal subscribers."""

    def handle_response(
        self, status: int, body: Any, headers: Sequence[tuple[str, str]]
    ) -> web.Response:
        response = (
            web.json_response(body, status=status)
            if isinstance(body, dict)
            else web.Response(status=status, text=body or None)
        )
        for name, value in headers:
            if name.lower() != "content-type":
                response.headers[name] = value
        return response


@dataclass
class OidcProvider:
    """The authorization and token endpoints of one issuer."""

    keys: IssuerKeys
    issuer: str
    audience: str
    clients: dict[str, PublicClient]
    code_lifetime: float = CODE_LIFETIME_SECONDS
    codes: dict[str, IssuedCode] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.server = _Server(self)
        self.server.register_grant(_CodeGrant, [S256Only(required=True), self._add_id_token])
        self.server.register_token_generator("default", self._access_token)

    @classmethod
    def create(
        cls,
        keys: IssuerKeys,
        issuer: str,
        audience: str,
        public_clients: Mapping[str, Sequence[str]] | None,
        code_lifetime: float = CODE_LIFETIME_SECONDS,
    ) -> OidcProvider:
        clients: dict[str, PublicClient] = {}
        for client_id, uris in (public_clients or {}).items():
            uri_list = [uris] if isinstance(uris, str) else list(uris)
            for uri in uri_list:
                problem = _redirect_uri_problem(uri)
                if problem:
                    raise ValueError(f"public client {client_id!r}: redirect URI {uri!r} {problem}")
            clients[client_id] = PublicClient(client_id, tuple(dict.fromkeys(uri_list)))
        return cls(keys, issuer, audience, clients, code_lifetime)

    def cors_policy(self) -> CorsPolicy | None:
        """The registered redirect URIs' origins may call discovery, JWKS and /token."""
        origins = {_origin(u) for c in self.clients.values() for u in c.redirect_uris}
        return CorsPolicy(origins=frozenset(origins)) if origins else None

    def registrations(self) -> dict[str, list[str]]:
        return {c.client_id: list(c.redirect_uris) for c in self.clients.values()}

    # ------------------------------------------------------------------------- tokens

    def _access_token(
        self,
        grant_type: str,
        client: PublicClient,
        user: SignedInUser | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        """An access token for the service (aud = the issuer's audience), Entra v2 shaped."""
        assert user is not None
        api_scopes = [_short_scope(s) for s in (scope or "").split() if s not in OIDC_SCOPES]
        token = self.keys.mint(
            sub=user.user_id,
            issuer=self.issuer,
            audience=self.audience,
            roles=(ADMIN_ROLE,) if user.admin else (),
            minutes=TOKEN_MINUTES,
            extra_claims={
                "azp": client.client_id,
                "scp": " ".join(api_scopes) or None,
                "preferred_username": user.user_id,
                "name": user.user_id,
            },
        )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": TOKEN_MINUTES * 60,
            "scope": scope or "",
        }

    def _add_id_token(self, grant: Any) -> None:
        def add(grant: Any, result: tuple[int, dict[str, Any], Any]) -> None:
            token = result[1]
            code: IssuedCode = grant.request.authorization_code
            if "openid" not in code.scope.split():
                return
            token["id_token"] = self.keys.mint(
                sub=code.user.user_id,
                issuer=self.issuer,
                audience=code.client_id,
                roles=(ADMIN_ROLE,) if code.user.admin else (),
                minutes=TOKEN_MINUTES,
                extra_claims={
                    "nonce": code.nonce,
                    "preferred_username": code.user.user_id,
                    "name": code.user.user_id,
                    "azp": code.client_id,
                },
            )

        grant.register_hook("after_create_token_response", add)

    # ---------------------------------------------------------------------- endpoints

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        """GET shows the sign-in form (or approves at once for ``login_hint``); POST is the
        form's answer."""
        if request.method == "POST":
            form = await request.post()
            items = [(k, v) for k, v in form.items() if isinstance(v, str)]
        else:
            items = list(request.query.items())
        try:
            oauth = _Request(request, items)
        except OAuth2Error as error:  # a Host that is not loopback: authlib wants https then
            return _error_page(error)
        try:
            grant = self.server.get_consent_grant(oauth)
        except OAuth2Error as error:
            if error.redirect_uri:
                return self.server.handle_error_response(oauth, error)  # type: ignore[no-any-return]
            return _error_page(error)
        data = oauth.payload.data
        if request.method == "POST":
            user_id = (data.get("login") or "").strip()
            problem = _user_id_problem(user_id)
            if problem:
                return self._form(request, data, problem, status=400)
            user = SignedInUser(user_id, data.get("admin") == "1")
        elif data.get("login_hint"):
            user_id = data["login_hint"].strip()
            problem = _user_id_problem(user_id)
            if problem:
                return self._form(request, data, problem, status=400)
            # ``admin=1`` next to login_hint: a dev extension for scripts that need the role.
            user = SignedInUser(user_id, data.get("admin") == "1")
        else:
            return self._form(request, data, None)
        response: web.StreamResponse = self.server.create_authorization_response(
            oauth, grant_user=user, grant=grant
        )
        return response

    async def token(self, request: web.Request, form: Mapping[str, Any]) -> web.StreamResponse:
        items = [(k, v) for k, v in form.items() if isinstance(v, str)]
        try:
            oauth = _Request(request, items)
        except OAuth2Error as error:  # a Host that is not loopback: authlib wants https then
            status, body, headers = error()
            return self.server.handle_response(status, body, headers)
        response: web.StreamResponse = self.server.create_token_response(oauth)
        return response

    def _form(
        self, request: web.Request, data: Mapping[str, str], problem: str | None, status: int = 200
    ) -> web.Response:
        hidden = "\n".join(
            f'      <input type="hidden" name="{_h(name)}" value="{_h(data[name])}">'
            for name in AUTHORIZE_PARAMS
            if name in data and name != "admin"
        )
        client = data.get("client_id", "")
        login = data.get("login") or data.get("login_hint") or ""
        error = f'    <p class="error" role="alert">{_h(problem)}</p>\n' if problem else ""
        body = _FORM.format(
            action=_h(self.issuer + "/authorize"),
            client=_h(client),
            redirect=_h(data.get("redirect_uri", "")),
            scope=_h(data.get("scope", "")),
            hidden=hidden,
            login=_h(login),
            error=error,
            role=_h(ADMIN_ROLE),
            style=_STYLE,
        )
        return web.Response(status=status, text=body, content_type="text/html", headers=_NO_STORE)


def _short_scope(scope: str) -> str:
    """Entra puts only the scope's name in ``scp``: api://app/Token.Issue -> Token.Issue."""
    if "://" in scope:
        return scope.rsplit("/", 1)[-1] or scope
    return scope


def _user_id_problem(user_id: str) -> str | None:
    if not user_id:
        return "Enter a user id."
    if len(user_id) > MAX_USER_ID or not user_id.isprintable():
        return f"A user id is 1 to {MAX_USER_ID} printable characters."
    return None


def _h(text: str) -> str:
    return html.escape(text, quote=True)


def _error_page(error: OAuth2Error) -> web.Response:
    """RFC 6749 §4.1.2.1: with an unknown client or an unregistered redirect URI the server
    must not redirect; it tells the user instead."""
    body = _ERROR.format(
        error=_h(error.error or "invalid_request"),
        description=_h(error.get_error_description() or ""),
        style=_STYLE,
    )
    return web.Response(status=400, text=body, content_type="text/html", headers=_NO_STORE)


# No form-action: Chromium applies it to the redirect that follows the POST (to the app).
_NO_STORE = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
}

_STYLE = """
    body { font: 16px/1.5 system-ui, sans-serif; background: #f3f4f6; color: #111827;
           margin: 0; display: flex; min-height: 100vh; align-items: center;
           justify-content: center; }
    main { background: #fff; padding: 2rem; border-radius: 12px; width: min(26rem, 92vw);
           box-shadow: 0 4px 24px rgba(0, 0, 0, .08); }
    h1 { font-size: 1.25rem; margin: 0 0 .25rem; }
    p.meta { color: #6b7280; font-size: .85rem; margin: 0 0 1.25rem; overflow-wrap: anywhere; }
    label { display: block; margin: .75rem 0 .25rem; font-weight: 600; }
    input[type=text] { width: 100%; box-sizing: border-box; padding: .55rem .7rem;
                       border: 1px solid #d1d5db; border-radius: 8px; font: inherit; }
    label.check { font-weight: 400; display: flex; gap: .5rem; align-items: center; }
    button { margin-top: 1.25rem; width: 100%; padding: .65rem; border: 0; border-radius: 8px;
             background: #2563eb; color: #fff; font: inherit; font-weight: 600;
             cursor: pointer; }
    button:hover { background: #1d4ed8; }
    .error { color: #b91c1c; background: #fef2f2; padding: .5rem .75rem;
             border-radius: 8px; }
    code { font-size: .85em; }
"""

_FORM = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Sign in (local issuer)</title>
  <style>{style}</style>
</head>
<body>
  <main>
    <h1>Sign in</h1>
    <p class="meta">Local development issuer. App <code>{client}</code> asks for
      <code>{scope}</code>, answer to <code>{redirect}</code>.</p>
{error}    <form method="post" action="{action}">
{hidden}
      <label for="login">User id</label>
      <input type="text" id="login" name="login" value="{login}" required autofocus
             autocomplete="username">
      <label class="check" for="admin">
        <input type="checkbox" id="admin" name="admin" value="1">
        Admin (role <code>{role}</code>)
      </label>
      <button id="approve" type="submit">Sign in</button>
    </form>
  </main>
</body>
</html>
"""

_ERROR = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Sign-in error (local issuer)</title>
  <style>{style}</style>
</head>
<body>
  <main>
    <h1>Sign-in request refused</h1>
    <p class="error" role="alert"><code>{error}</code>: {description}</p>
    <p class="meta">The browser was not sent back to the app: without a registered client id
      and redirect URI (<code>--public-client CLIENT_ID=REDIRECT_URI</code>) the issuer cannot
      trust where it would go.</p>
  </main>
</body>
</html>
"""
