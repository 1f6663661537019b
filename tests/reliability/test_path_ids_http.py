"""The one path form of a user id over real HTTP: function_app.py behind localdev.host,
which decodes route values like the Functions host (every escape but %2F,
dotnet/aspnetcore#2655), against the session's Azurite, ACS emulator and issuer."""

from __future__ import annotations

import base64
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.keys import path_form
from tests.reliability.support import ADMIN, bearer, send
from tests.unit.test_path_ids import ids

TOKEN_PATH = "/api/token"


def segment(value: str) -> str:
    return quote(value, safe="")


def test_a_b64_prefixed_id_cannot_get_another_user_deleted(http_app, issuer):
    """Issue 12 item 3: an attacker who picks the id b64.<base64url(victim)> at the IdP
    must not get the victim deleted when an admin deletes the attacker."""
    victim = "victim-" + http_app.table_name
    attacker = "b64." + base64.urlsafe_b64encode(victim.encode()).decode().rstrip("=")
    for user in (victim, attacker):
        assert send(http_app, "POST", TOKEN_PATH, headers=bearer(issuer.mint(user)))[0] == 200
    admin = bearer(issuer.mint("root", roles=[ADMIN]))
    # The admin percent-encodes the attacker's id, as the README used to say: refused,
    # and the answer names the attacker's canonical form.
    status, body, _ = send(http_app, "DELETE", "/api/users/" + segment(attacker), headers=admin)
    assert status == 400 and body["error"]["target"] == "userId", body
    assert repr(path_form(attacker)) in body["error"]["message"]
    status, me, _ = send(http_app, "GET", "/api/me", headers=bearer(issuer.mint(victim)))
    assert status == 200 and me["state"] == "active", me
    # The canonical form deletes the attacker, and only the attacker.
    status, _, _ = send(http_app, "DELETE", "/api/users/" + segment(path_form(attacker)),
                        headers=admin)
    assert status == 202
    status, me, _ = send(http_app, "GET", "/api/me", headers=bearer(issuer.mint(attacker)))
    assert status == 200 and me["state"] == "deleting", me
    status, me, _ = send(http_app, "GET", "/api/me", headers=bearer(issuer.mint(victim)))
    assert status == 200 and me["state"] == "active", me


def test_invalid_utf8_escapes_are_not_a_second_spelling_of_an_id(http_app, issuer):
    """Kestrel keeps an escape that is not valid UTF-8 as written (dotnet/aspnetcore
    src/Shared/UrlDecoder/UrlDecoder.cs, DecodeCore/Copy), so the app gets the route value
    "%FF", not U+FFFD: a 400 naming that value's canonical form, never the user whose id is
    U+FFFD (whose canonical spelling is %EF%BF%BD)."""
    admin = bearer(issuer.mint("root", roles=[ADMIN]))
    for raw, value in (("%FF", "%FF"), ("%C0%AF", "%C0%AF"), ("%ED%A0%80", "%ED%A0%80")):
        status, body, _ = send(http_app, "GET", "/api/users/" + raw, headers=admin)
        assert status == 400 and body["error"]["target"] == "userId", (raw, body)
        assert repr(path_form(value)) in body["error"]["message"], (raw, body)
    status, body, _ = send(http_app, "GET", "/api/users/" + segment(path_form("\ufffd")),
                           headers=admin)
    assert status == 404 and body["error"]["code"] == "not_found", body


@settings(max_examples=60, deadline=None, derandomize=True)
@given(user_id=ids, spelling=st.sampled_from(["canonical", "literal", "padded"]))
def test_only_the_canonical_form_is_accepted_through_the_host(http_app, issuer, user_id,
                                                               spelling):
    """Every id's canonical form reaches the app as that id (an unknown user: 404); the id
    percent-encoded as is, when that is not its form, and a padded b64 form are 400s that
    name a canonical form."""
    admin = bearer(issuer.mint("root", roles=[ADMIN]))
    form = path_form(user_id)
    if spelling == "canonical":
        path = segment(form)
    elif spelling == "literal":
        if form == user_id:
            return
        path = segment(user_id)
    else:
        path = segment("b64." + base64.urlsafe_b64encode(user_id.encode()).decode())
        if path == segment(form):
            return
    status, body, _ = send(http_app, "GET", "/api/users/" + path, headers=admin)
    if spelling == "canonical":
        assert status == 404 and body["error"]["code"] == "not_found", (user_id, body)
    else:
        assert status == 400 and body["error"]["target"] == "userId", (user_id, path, body)
        assert "'b64." in body["error"]["message"]
