"""The one path form of a user id (shared/keys.py ``path_form``/``user_id_from_path``), as
hypothesis properties: every id round-trips, no other value reaches an id (so the rule is
injective and no spelling of one id addresses another), and the form survives the
Functions host's decoding (localdev.host's ``decode_segment``, which decodes like Kestrel:
every escape but %2F, dotnet/aspnetcore#2655)."""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from localdev.host.routes import decode_segment
from shared.errors import BadRequest
from shared.keys import (
    MAX_USER_ID_BYTES,
    is_valid_user_id,
    path_form,
    user_id_from_path,
)

PREFIXES = ("", "b64.", "B64.", "/", "%", "%2F", "%252F", "a/", ".", "..", "b64.YQ", " ")


#: Ids as IdPs could issue them: unicode, with '/', '%', b64.-prefixes, dots.
ids = st.builds(
    lambda prefix, body, suffix: prefix + body + suffix,
    st.sampled_from(PREFIXES),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40),
    st.sampled_from(("", "/", "%", "%2F", "=", ".", "/..")),
).filter(is_valid_user_id)

#: Any route value the host could hand over: ids, their b64 forms and near misses.
values = st.one_of(
    ids,
    ids.map(lambda i: "b64." + base64.urlsafe_b64encode(i.encode()).decode()),  # padded
    ids.map(lambda i: "b64." + base64.urlsafe_b64encode(i.encode()).decode().rstrip("=")),
    st.text(alphabet="b64.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=/%",
            max_size=30).map(lambda t: "b64." + t),
)

PROPERTY = settings(max_examples=400, deadline=None, derandomize=True)


@PROPERTY
@given(user_id=ids)
@example("b64.dmljdGlt")  # the attack: b64. + base64url("victim")
@example("a/b")
@example("a%2Fb")
@example("..")
@example("x" * MAX_USER_ID_BYTES)
@example("é" * (MAX_USER_ID_BYTES // 2))
def test_every_id_round_trips_through_its_one_form(user_id: str) -> None:
    form = path_form(user_id)
    assert user_id_from_path(form) == user_id
    # The form holds no '%' and no '/', so percent-encoding it and decoding it like the
    # host gives it back exactly: this is the route value the app receives.
    assert "%" not in form and "/" not in form and form not in (".", "..")
    assert decode_segment(quote(form, safe="")) == form


@PROPERTY
@given(a=ids, b=ids)
def test_the_rule_is_injective(a: str, b: str) -> None:
    assert (path_form(a) == path_form(b)) == (a == b)


@PROPERTY
@given(value=values)
@example("b64.dmljdGlt")
@example("b64.YQ=")   # padded
@example("b64.YR")    # trailing bits: base64 decoders read it as 'a'
@example("b64.Y Q")
@example("a%2Fb")
def test_no_other_value_reaches_an_id(value: str) -> None:
    """Whatever value the host hands over, it is the canonical form of the id it yields,
    or a 400 naming the canonical form."""
    refused: BadRequest | None = None
    try:
        user_id = user_id_from_path(value)
    except BadRequest as exc:
        refused = exc
    if refused is None:
        assert path_form(user_id) == value
        return
    assert refused.field == "userId"
    if is_valid_user_id(value):
        assert repr(path_form(value)) in refused.message


def test_a_b64_prefixed_id_cannot_name_the_id_it_encodes() -> None:
    victim = "victim"
    attacker = "b64." + base64.urlsafe_b64encode(victim.encode()).decode().rstrip("=")
    assert path_form(victim) == "victim"
    assert path_form(attacker) == "b64.YjY0LmRtbGpkR2x0"
    with pytest.raises(BadRequest) as refused:
        user_id_from_path(attacker)
    assert "'b64.YjY0LmRtbGpkR2x0'" in refused.value.message
    assert "'victim'" in refused.value.message


# -- the examples' helpers implement the same rule ------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def _example_python() -> Any:
    spec = importlib.util.spec_from_file_location("user_path", REPO / "examples/python/user_path.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@PROPERTY
@given(user_id=ids)
def test_the_python_example_helper_gives_the_canonical_form(user_id: str) -> None:
    helper = _example_python()
    assert helper.user_path_form(user_id) == path_form(user_id)
    assert decode_segment(helper.user_path_segment(user_id)) == path_form(user_id)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_node_example_helper_gives_the_canonical_form() -> None:
    sample = [*PREFIXES[1:], "alice", "a/b", "a%2Fb", "ünï 🙂/x", "b64.dmljdGlt", "(x)!*'",
              "é" * 100, "..", ".", "...", "x" * 256]
    sample = [s for s in sample if is_valid_user_id(s)]
    script = ("import { userPathForm, userPathSegment } from "
              f"{json.dumps((REPO / 'examples/node/user-path.mjs').as_uri())};"
              "const ids = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
              "console.log(JSON.stringify(ids.map((i) => [userPathForm(i), userPathSegment(i)])));")
    script = script.replace("require('fs')", "(await import('node:fs'))")
    proc = subprocess.run(["node", "--input-type=module", "-e", script],
                          input=json.dumps(sample), capture_output=True, text=True,
                          timeout=60, check=True)
    for user_id, (form, seg) in zip(sample, json.loads(proc.stdout), strict=True):
        assert form == path_form(user_id), user_id
        assert decode_segment(seg) == path_form(user_id), user_id
