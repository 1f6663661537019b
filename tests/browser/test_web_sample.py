"""The web sample (examples/web) in a real headless Chromium against the whole local stack:
sign-in through the issuer's form (authorization code + PKCE), ACS tokens through
``AzureCommunicationTokenCredential``, refresh, revoke, delete, error messages (401, 403,
410, 429, 503), and CORS refusing a page from an origin that is not allowed.

The web sample is served from its own origin (another port than the API's), so every API
call in these tests is a real cross-origin request that Chromium checks.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from localdev.stack import Stack
from localdev.stack.core import API_SCOPE
from localdev.stack.web import make_server
from tests.revoke_clock import leave_revoke_second

from ..e2e.helpers import StackClient
from .browser import Browser


def new_user() -> str:
    return "web-" + uuid.uuid4().hex[:12]


def sign_in(browser: Browser, stack: Stack, user: str, admin: bool = False) -> None:
    """Through the issuer's sign-in form, as a person would (no login_hint)."""
    assert stack.web is not None
    browser.goto(stack.web.url)
    browser.wait_for("body[data-ready='true']", state="attached")
    assert browser.text("#signed-in-as") == "Not signed in."
    browser.click("#sign-in")
    browser.wait_for("#login")  # the issuer's dev sign-in form, on the issuer's origin
    assert browser.url().startswith(stack.issuer + "/")
    browser.fill("#login", user)
    if admin:
        browser.check("#admin")
    browser.click("#approve")
    # Back on the sample: it exchanged the code (with its PKCE verifier) for tokens.
    browser.wait_for("body[data-ready='true']", state="attached")
    status = browser.status()
    assert status["code"] == "signed-in", status
    assert browser.text("#signed-in-as") == f"Signed in as {user}."
    assert browser.url() == stack.web.url  # code and state are gone from the address bar


def token_answers(browser: Browser, stack: Stack) -> list[dict[str, Any]]:
    """Every ``POST /api/token`` answer the page got, in order."""
    return [r for r in browser.responses()
            if r["method"] == "POST" and r["url"] == stack.api_base + "/token"]


def shows_the_wait(browser: Browser, stack: Stack, button: str, http_status: int,
                   code: str, prefix: str) -> None:
    """Clicking ``button`` gets ``http_status`` with ``error.retryAfterSeconds`` in the body,
    and the page shows its message with that wait."""
    status = browser.act(button)
    answer = token_answers(browser, stack)[-1]
    assert answer["status"] == http_status
    wait = answer["body"]["error"]["retryAfterSeconds"]
    assert isinstance(wait, int) and wait >= 1, answer
    assert status["code"] == code, status
    assert status["text"].startswith(prefix), status
    assert f"Try again in {wait} second" in status["text"], (wait, status)


def tokens_issued(client: StackClient) -> int:
    return int(client.emulator("GET", "stats")["tokensIssued"])


def fetch_from_page(browser: Browser, url: str, method: str = "GET",
                    token: str | None = None) -> dict[str, Any]:
    """What script on the current page can read of a fetch: status and body, or the error."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    expression = f"""(async () => {{
        try {{
            const resp = await fetch({json.dumps(url)}, {{
                method: {json.dumps(method)}, headers: {json.dumps(headers)}, cache: "no-store"}});
            return {{status: resp.status, body: await resp.text()}};
        }} catch (err) {{
            return {{error: `${{err.name}}: ${{err.message}}`}};
        }}
    }})()"""
    result: dict[str, Any] = browser.evaluate(expression)
    return result


def test_sign_in_token_refresh_revoke_delete(browser: Browser, web_stack: Stack,
                                              web_client: StackClient) -> None:
    user = new_user()
    sign_in(browser, web_stack, user)
    # Outcomes are announced to screen readers: one polite live region.
    region = browser.evaluate(
        "(() => { const el = document.getElementById('status');"
        " return [el.getAttribute('role'), el.getAttribute('aria-live')]; })()")
    assert region == ["status", "polite"]

    # Get token: the credential has none, so its tokenRefresher calls POST /api/token.
    issued_before = tokens_issued(web_client)
    status = browser.act("#get-token")
    assert status["code"] == "token", status
    first = token_answers(browser, web_stack)
    assert [a["status"] for a in first] == [200]
    token1 = first[0]["body"]["token"]
    acs_user = browser.text("#acs-user-id")
    assert acs_user == first[0]["body"]["acsUserId"] and acs_user.startswith("8:acs:")
    assert browser.text("#scopes") == "chat, voip"
    assert browser.text("#service-calls") == "1"
    assert tokens_issued(web_client) == issued_before + 1
    assert web_client.validate(token1) == {"valid": True, "reason": "ok", "identity": acs_user}

    # Again: the credential's cached token is still valid, so no call to the service.
    status = browser.act("#get-token")
    assert status["code"] == "cached", status
    assert len(token_answers(browser, web_stack)) == 1
    assert browser.text("#service-calls") == "1"

    # A fresh token: a new credential calls the service again, which asks ACS again.
    status = browser.act("#fresh-token")
    assert status["code"] == "refreshed", status
    answers = token_answers(browser, web_stack)
    assert [a["status"] for a in answers] == [200, 200]
    token2 = answers[1]["body"]["token"]
    # token2 may equal token1: ACS tokens carry whole-second iat/exp and no nonce, so two
    # tokens for one identity and scope set in the same second can be the same string. The
    # proof that the service asked ACS again is the emulator's count below.
    assert answers[1]["body"]["acsUserId"] == acs_user  # the same ACS identity
    assert browser.text("#service-calls") == "2"
    assert tokens_issued(web_client) == issued_before + 2

    # Revoke: every token issued so far stops working (the emulator checks them as ACS would).
    status = browser.act("#revoke")
    assert status["code"] == "revoked", status
    for old in (token1, token2):
        assert web_client.validate(old)["reason"] == "revoked"
    assert browser.text("#acs-user-id") == "none yet"

    # A new token after the revocation works, for the same identity (issued after the
    # revoke's second: a same-second token's fate on Azure is unknown).
    leave_revoke_second()
    status = browser.act("#fresh-token")
    assert status["code"] == "refreshed", status
    token3 = token_answers(browser, web_stack)[-1]["body"]["token"]
    assert web_client.validate(token3)["valid"] is True
    assert browser.text("#acs-user-id") == acs_user

    # Delete the account (the page asks to confirm; the test accepts): tokens die at once.
    status = browser.act("#delete-account")
    assert status["code"] == "deleted", status
    assert web_client.validate(token3)["valid"] is False

    # The service now answers 410 and the page says what that means.
    status = browser.act("#fresh-token")
    assert status["code"] == "gone", status
    assert status["kind"] == "error"
    assert status["text"].startswith("410: this account has been deleted.")
    assert token_answers(browser, web_stack)[-1]["status"] == 410


def test_error_messages_for_401_429_and_503(browser: Browser, web_stack: Stack,
                                            web_client: StackClient) -> None:
    sign_in(browser, web_stack, new_user())
    try:
        # ACS throttles longer than the service's retry budget: the service answers 429
        # with Retry-After, which Azure's CORS (like the local host's) does not expose to
        # other origins (docs/deploy.md), and with the same wait in the body
        # (error.retryAfterSeconds): the page shows that wait.
        web_client.emulator("POST", "faults", {"clear": True, "fault": {
            "operation": "*", "status": 429, "retryAfterSeconds": 120, "count": 20}})
        shows_the_wait(browser, web_stack, "#get-token", 429, "throttled", "429: ")

        # ACS failing: after its retries the service answers 503, with its wait in the body.
        web_client.emulator("POST", "faults", {"clear": True, "fault": {
            "operation": "*", "status": 503, "count": 20}})
        shows_the_wait(browser, web_stack, "#fresh-token", 503, "unavailable",
                       "503: the service is unavailable right now.")
    finally:
        web_client.emulator("POST", "faults", {"clear": True})

    # A sign-in token the service does not accept (here: its signature broken): 401.
    browser.evaluate("""(() => {
        for (const key of Object.keys(sessionStorage)) {
            if (!key.startsWith("oidc.user:")) continue;
            const user = JSON.parse(sessionStorage.getItem(key));
            user.access_token = user.access_token.slice(0, -4) + "AAAA";
            sessionStorage.setItem(key, JSON.stringify(user));
        }
    })()""")
    status = browser.act("#fresh-token")
    assert token_answers(browser, web_stack)[-1]["status"] == 401
    assert status["code"] == "unauthorized", status
    assert "Sign in again" in status["text"]


@pytest.fixture
def other_origin(web_stack: Stack) -> Iterator[str]:
    """The same page, served from an origin the API does not allow."""
    assert web_stack.web is not None
    server = make_server(web_stack.web.root, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_page_from_an_origin_not_allowed_cannot_read_the_api(
        browser: Browser, web_stack: Stack, web_client: StackClient, other_origin: str) -> None:
    user = new_user()
    token = web_client.mint(user)

    # The allowed origin (the control): the page reads the answer.
    assert web_stack.web is not None
    browser.goto(web_stack.web.url)
    allowed = fetch_from_page(browser, web_stack.api_base + "/token", "POST", token)
    assert allowed.get("status") == 200, allowed
    assert json.loads(allowed["body"])["acsUserId"].startswith("8:acs:")

    other = new_user()
    other_token = web_client.mint(other)
    browser.goto(other_origin)
    browser.wait_for("body[data-ready='true']", state="attached")
    # With Authorization the browser asks first (preflight); the host's answer carries no
    # CORS headers for this origin, so Chromium never sends the POST: no identity is made.
    refused = fetch_from_page(browser, web_stack.api_base + "/token", "POST", other_token)
    assert refused == {"error": "TypeError: Failed to fetch"}
    assert web_client.call("GET", "/me", other_token).status == 404
    # A simple GET is sent, but its answer is not readable by the page either.
    refused = fetch_from_page(browser, web_stack.api_base + "/health")
    assert refused == {"error": "TypeError: Failed to fetch"}
    assert web_client.call("GET", "/health").status == 200


def sign_in_token_scopes(browser: Browser) -> list[str]:
    """The ``scp`` claim of the access token the page holds after sign-in."""
    scp: str = browser.evaluate("""(() => {
        const key = Object.keys(sessionStorage).find((k) => k.startsWith("oidc.user:"));
        const part = JSON.parse(sessionStorage.getItem(key)).access_token.split(".")[1];
        const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
        return JSON.parse(json).scp ?? "";
    })()""")
    return scp.split()


def test_a_sign_in_without_the_required_scope_shows_the_403_message(
        browser: Browser, scoped_stack: Stack) -> None:
    """A signed-in user whose token lacks the scope the service requires gets a 403 from
    the service (as Microsoft.Identity.Web's RequiredScopeFilter answers 403 Forbidden when
    no accepted scope is in the token: AzureAD/microsoft-identity-web,
    src/Microsoft.Identity.Web/Resource/RequiredScopeFilter.cs), and the page says so and
    shows no token."""
    client = StackClient(scoped_stack)
    required = scoped_stack.settings["AUTH_REQUIRED_SCOPES"]
    sign_in(browser, scoped_stack, new_user())
    # A real sign-in token for this API, with the scope the sample asked for, not the one the
    # service requires.
    assert sign_in_token_scopes(browser) == [API_SCOPE.rsplit("/", 1)[-1]]
    assert required not in sign_in_token_scopes(browser)

    status = browser.act("#get-token")
    answers = token_answers(browser, scoped_stack)
    assert [a["status"] for a in answers] == [403], answers
    body = answers[0]["body"]
    assert body["error"]["code"] == "forbidden", body
    assert f"'{required}'" in body["error"]["message"], body
    assert "token" not in body and "acsUserId" not in body, body
    # The page's 403 message, with the service's reason, and nothing else.
    assert (status["kind"], status["code"]) == ("error", "forbidden"), status
    assert status["text"] == f"403: not allowed. {body['error']['message']}", status
    for field in ("#acs-user-id", "#scopes", "#expires"):
        assert browser.text(field) == "none yet", field
    assert browser.text("#service-calls") == "0"
    assert "8:acs:" not in browser.evaluate("document.body.innerText")
    # The service refused before doing anything: no ACS identity, no ACS token.
    stats = client.emulator("GET", "stats")
    assert (stats["identitiesCreated"], stats["tokensIssued"]) == (0, 0), stats
