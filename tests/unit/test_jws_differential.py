"""shared.jws against PyJWT as the oracle: for every token, the same answer as shared.auth
gave when it verified with PyJWT (``jwt.decode`` with the same key, algorithms, audience,
issuer, leeway and required claims), the same refusal message, and equal claims.

``oracle`` below is shared/auth.py's ``_verify`` and ``JwksCache`` key parsing as they
were with PyJWT 2.15.1 (commit 0be6a30), with a dict for the JWKS. ``ours`` is today's
``_verify``: ``jws.parse``, the key by kid, ``jws.verify``. Both read the same fixed clock,
so boundary cases (``exp`` exactly at the leeway) are deterministic.

Deliberate differences are only in JWK parsing (test_jwk_parsing_differs_only_where_stricter,
test_a_token_signed_by_an_rsa_key_under_2048_bits_is_refused) and in one kid naming two
keys (see ``ours``), and each says why; on tokens there is none.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any
from unittest import mock

import jwt
import jwt.api_jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import jws
from shared.auth import LEEWAY_SECONDS
from shared.errors import Unauthenticated

ISSUER = "https://login.example.com/tenant/v2.0"
AUDIENCES = ["api://token-service", "6e74172b-be56-4843-9ff4-e66a39bb12e3"]
NOW = 1_800_000_000.25  # a fixed instant with a fraction, as time.time() has one
PROPERTY = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KID, EC_KID = "rsa-1", "ec-1"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key: Any, **members: Any) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) \
        else jwt.algorithms.ECAlgorithm
    return {**json.loads(algorithm.to_jwk(key.public_key())), **members}


JWKS = [public_jwk(RSA_KEY, kid=RSA_KID, alg="RS256", use="sig"),
        public_jwk(EC_KEY, kid=EC_KID, alg="ES256", use="sig")]


# --- the two verifiers ----------------------------------------------------------------


@contextmanager
def oracle_clock() -> Iterator[None]:
    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:  # type: ignore[override]
            return datetime.fromtimestamp(NOW, tz=tz or timezone.utc)

    with mock.patch.object(jwt.api_jwt, "datetime", Frozen):
        yield


def oracle(token: str, jwks: list[dict[str, Any]] = JWKS) -> tuple[str, Any]:
    """shared/auth.py's _verify with PyJWT, as of commit 0be6a30."""
    keys: dict[str, jwt.PyJWK] = {}
    for entry in jwks:
        if entry.get("kid") and entry.get("use", "sig") == "sig":
            try:
                keys[str(entry["kid"])] = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, RecursionError, ValueError, TypeError):
        return "refused", "the bearer token is malformed"
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ("RS256", "ES256"):
        return "refused", "the token's algorithm is not accepted"
    if not isinstance(kid, str) or not kid or len(kid) > 256:
        return "refused", "the token names no signing key"
    key = keys.get(kid)
    if key is None:
        return "refused", "the token's signing key is unknown"
    if key.algorithm_name != alg:
        return "refused", "the token's algorithm does not match its key"
    try:
        with oracle_clock():
            claims = jwt.decode(
                token, key.key, algorithms=[alg], audience=AUDIENCES, issuer=ISSUER,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"], "verify_signature": True})
    except jwt.ExpiredSignatureError:
        return "refused", "the token has expired"
    except jwt.ImmatureSignatureError:
        return "refused", "the token is not yet valid"
    except jwt.InvalidAudienceError:
        return "refused", "the token is for another audience"
    except jwt.InvalidIssuerError:
        return "refused", "the token is from another issuer"
    except jwt.MissingRequiredClaimError as exc:
        return "refused", f"the token has no '{exc.claim}' claim"
    except (jwt.PyJWTError, RecursionError, OverflowError, ValueError, TypeError):
        return "refused", "the token is invalid"
    return "accepted", _canonical(claims)


def ours(token: str, jwks: list[dict[str, Any]] = JWKS) -> tuple[str, Any]:
    """Today's shared/auth.py _verify: the same steps, JwksCache's dict in place (kid ->
    alg -> key, so an RSA and an EC key may share a kid, RFC 7517 section 4.5: a
    deliberate difference, tests/reliability/test_jws_attacks.py; no JWKS here has one)."""
    keys: dict[str, dict[str, jws.Key]] = {}
    for entry in jwks:
        if entry.get("kid") and entry.get("use", "sig") == "sig":
            try:
                parsed_key = jws.parse_jwk(entry)
            except jws.InvalidKey:
                continue
            keys.setdefault(str(entry["kid"]), {})[parsed_key.alg] = parsed_key
    try:
        parsed = jws.parse(token)
        by_alg = keys.get(parsed.kid)
        key = (by_alg.get(parsed.alg) or next(iter(by_alg.values()))) if by_alg else None
        if key is None:
            raise Unauthenticated("the token's signing key is unknown")
        claims = jws.verify(parsed, key, audiences=AUDIENCES, issuer=ISSUER,
                            leeway=LEEWAY_SECONDS, now=NOW)
    except Unauthenticated as exc:
        return "refused", exc.message
    return "accepted", _canonical(claims)


def _canonical(claims: Mapping[str, Any]) -> str:
    """Claims as comparable text (a NaN claim is not equal to itself as a float)."""
    return json.dumps(claims, sort_keys=True)


def assert_same(token: str, jwks: list[dict[str, Any]] = JWKS) -> tuple[str, Any]:
    expected = oracle(token, jwks)
    assert ours(token, jwks) == expected, token[:300]
    return expected


# --- token construction --------------------------------------------------------------


def signature(signing_input: bytes, alg: str) -> bytes:
    if alg == "ES256":
        r, s = decode_dss_signature(EC_KEY.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return RSA_KEY.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())


def raw_token(header: bytes, payload: bytes, alg: str = "RS256", *,
              encode=b64) -> str:
    """Any header and payload bytes, signed for real by the key of ``alg``."""
    signing_input = f"{encode(header)}.{encode(payload)}"
    return f"{signing_input}.{encode(signature(signing_input.encode(), alg))}"


def good_claims(**changes: Any) -> dict[str, Any]:
    claims = {"iss": ISSUER, "aud": AUDIENCES[0], "sub": "alice", "oid": "alice",
              "iat": int(NOW) - 10, "nbf": int(NOW) - 10, "exp": int(NOW) + 3600}
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not REMOVE}


REMOVE = object()


def token(alg: str = "RS256", header: Mapping[str, Any] | None = None, **claims: Any) -> str:
    head = {"alg": alg, "typ": "JWT", "kid": RSA_KID if alg == "RS256" else EC_KID}
    head.update(header or {})
    head = {name: value for name, value in head.items() if value is not REMOVE}
    signing_alg = alg if alg in ("RS256", "ES256") else "RS256"
    return raw_token(json.dumps(head).encode(), json.dumps(good_claims(**claims)).encode(),
                     signing_alg)


def replace_segment(value: str, index: int, segment: str) -> str:
    parts = value.split(".")
    parts[index] = segment
    return ".".join(parts)


def hs256_with_public_pem() -> str:
    pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    import hmac

    head = b64(json.dumps({"alg": "HS256", "kid": RSA_KID}).encode())
    body = b64(json.dumps(good_claims()).encode())
    mac = hmac.new(pem, f"{head}.{body}".encode(), "sha256").digest()
    return f"{head}.{body}.{b64(mac)}"


def non_canonical_last_char(segment: str) -> str:
    """The same bytes with a stray low bit set in the last character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(segment[-1])
    return segment[:-1] + alphabet[last | 1 if last % 2 == 0 else last]


VALID = token()
VALID_EC = token("ES256")
HEAD, BODY, SIG = VALID.split(".")
T = int(NOW)


CORPUS: dict[str, tuple[str, str]] = {
    # name: (token, the expected outcome or refusal message fragment)
    "valid RS256": (VALID, "accepted"),
    "valid ES256": (VALID_EC, "accepted"),
    "tampered payload": (replace_segment(VALID, 1, b64(json.dumps(
        good_claims(sub="root")).encode())), "the token is invalid"),
    "tampered signature": (replace_segment(VALID, 2, b64(bytes(
        b ^ (i == 5) for i, b in enumerate(base64.urlsafe_b64decode(SIG + "==")))),
    ), "the token is invalid"),
    "ES256 signature truncated": (replace_segment(VALID_EC, 2, b64(base64.urlsafe_b64decode(
        VALID_EC.split(".")[2] + "==")[:63])), "the token is invalid"),
    "ES256 signature as DER": (replace_segment(VALID_EC, 2, b64(EC_KEY.sign(
        ".".join(VALID_EC.split(".")[:2]).encode(), ec.ECDSA(hashes.SHA256())))),
        "the token is invalid"),
    "RS256 signature under the EC kid": (token(header={"kid": EC_KID}),
                                         "does not match its key"),
    "ES256 signature under the RSA kid": (token("ES256", header={"kid": RSA_KID}),
                                          "does not match its key"),
    "alg none": (f"{b64(json.dumps({'alg': 'none', 'kid': RSA_KID}).encode())}.{BODY}.",
                 "algorithm is not accepted"),
    "alg NONE": (token(header={"alg": "NONE"}), "algorithm is not accepted"),
    "alg rs256": (token(header={"alg": "rs256"}), "algorithm is not accepted"),
    "alg missing": (token(header={"alg": REMOVE}), "algorithm is not accepted"),
    "alg a list": (token(header={"alg": ["RS256"]}), "algorithm is not accepted"),
    "HS256 with the public key PEM": (hs256_with_public_pem(), "algorithm is not accepted"),
    "unknown kid": (token(header={"kid": "other"}), "signing key is unknown"),
    "kid missing": (token(header={"kid": REMOVE}), "names no signing key"),
    "kid empty": (token(header={"kid": ""}), "names no signing key"),
    "kid 257 characters": (token(header={"kid": "k" * 257}), "names no signing key"),
    "kid 256 characters": (token(header={"kid": "k" * 256}), "signing key is unknown"),
    "kid a number": (token(header={"kid": 1}), "malformed"),
    "kid an object": (token(header={"kid": {"$ne": None}}), "malformed"),
    "expired within the leeway": (token(exp=T - 30), "accepted"),
    "expired less than the leeway ago": (token(exp=T - LEEWAY_SECONDS + 1), "accepted"),
    "expired just over the leeway ago (exp <= now - leeway)": (
        token(exp=T - LEEWAY_SECONDS), "expired"),
    "expired long ago": (token(exp=T - 86400), "expired"),
    "nbf within the leeway": (token(nbf=T + 30), "accepted"),
    "nbf beyond the leeway": (token(nbf=T + 120), "not yet valid"),
    "nbf a string": (token(nbf="soon"), "the token is invalid"),
    "iat within the leeway": (token(iat=T + 60), "accepted"),
    "iat beyond the leeway": (token(iat=T + 61), "not yet valid"),
    "iat in the future and expired (iat is checked first)": (
        token(iat=T + 600, exp=T - 600), "not yet valid"),
    "iat a string": (token(iat="yesterday"), "the token is invalid"),
    "iat null": (token(iat=None), "the token is invalid"),
    "aud a matching string": (token(aud=AUDIENCES[1]), "accepted"),
    "aud a list with a match": (token(aud=["x", AUDIENCES[0]]), "accepted"),
    "aud a list without a match": (token(aud=["x", "y"]), "another audience"),
    "aud another string": (token(aud="api://other"), "another audience"),
    "aud an empty list": (token(aud=[]), "no 'aud' claim"),
    "aud an empty string": (token(aud=""), "no 'aud' claim"),
    "aud false": (token(aud=False), "no 'aud' claim"),
    "aud a list with a number": (token(aud=[AUDIENCES[0], 1]), "another audience"),
    "aud an object": (token(aud={AUDIENCES[0]: True}), "another audience"),
    "aud a number": (token(aud=7), "another audience"),
    "aud missing": (token(aud=REMOVE), "no 'aud' claim"),
    "aud null": (token(aud=None), "no 'aud' claim"),
    "exp missing": (token(exp=REMOVE), "no 'exp' claim"),
    "iss missing": (token(iss=REMOVE), "no 'iss' claim"),
    "exp, iss and aud missing (exp first)": (token(exp=REMOVE, iss=REMOVE, aud=REMOVE),
                                             "no 'exp' claim"),
    "iss another": (token(iss="https://evil.example/"), "another issuer"),
    "iss with a trailing slash": (token(iss=ISSUER + "/"), "another issuer"),
    "iss a number": (token(iss=1), "another issuer"),
    "iss a list": (token(iss=[ISSUER]), "another issuer"),
    "exp a numeric string": (token(exp=str(T + 3600)), "accepted"),
    "exp a string": (token(exp="tomorrow"), "the token is invalid"),
    "exp a float": (token(exp=T + 3600.75), "accepted"),
    "exp 10**400": (token(exp=10**400), "accepted"),
    "exp Infinity": (token(exp=float("inf")), "the token is invalid"),
    "exp NaN": (token(exp=float("nan")), "the token is invalid"),
    "exp true": (token(exp=True), "expired"),
    "exp a list": (token(exp=[T + 3600]), "the token is invalid"),
    "exp of 5000 digits": (raw_token(json.dumps({"alg": "RS256", "kid": RSA_KID}).encode(),
                                     json.dumps(good_claims()).replace(
                                         f'"exp": {T + 3600}', '"exp": ' + "9" * 5000).encode()),
                           "the token is invalid"),
    "sub a number": (token(sub=1), "the token is invalid"),
    "jti a number": (token(jti=1), "the token is invalid"),
    "jti a string": (token(jti="abc"), "accepted"),
    "header a list": (raw_token(b"[]", json.dumps(good_claims()).encode()), "malformed"),
    "header a string": (raw_token(b'"RS256"', json.dumps(good_claims()).encode()),
                        "malformed"),
    "header not JSON": (raw_token(b"{alg: RS256}", json.dumps(good_claims()).encode()),
                        "malformed"),
    "header empty": (raw_token(b"", json.dumps(good_claims()).encode()), "malformed"),
    "header deeply nested": (raw_token(b"[" * 100000 + b"]" * 100000, b"{}"), "malformed"),
    "header in UTF-16 (json.loads detects it)": (raw_token(
        json.dumps({"alg": "RS256", "kid": RSA_KID}).encode("utf-16"),
        json.dumps(good_claims()).encode()), "accepted"),
    "header with duplicate alg (the last wins)": (raw_token(
        b'{"alg":"none","alg":"RS256","kid":"rsa-1"}', json.dumps(good_claims()).encode()),
        "accepted"),
    "header not UTF-8": (raw_token(b'{"alg":"RS256","kid":"rsa-1","x":"\xff"}',
                                   json.dumps(good_claims()).encode()), "malformed"),
    "payload a list": (raw_token(json.dumps({"alg": "RS256", "kid": RSA_KID}).encode(),
                                 b"[1]"), "the token is invalid"),
    "payload not JSON": (raw_token(json.dumps({"alg": "RS256", "kid": RSA_KID}).encode(),
                                   b"not json"), "the token is invalid"),
    "payload deeply nested": (raw_token(
        json.dumps({"alg": "RS256", "kid": RSA_KID}).encode(),
        json.dumps(good_claims()).replace("}", ', "x": ' + "[" * 100000 + "]" * 100000
                                          + "}").encode()), "the token is invalid"),
    "two segments": (f"{HEAD}.{BODY}", "malformed"),
    "four segments": (f"{VALID}.{SIG}", "malformed"),
    "empty signature segment": (f"{HEAD}.{BODY}.", "the token is invalid"),
    "one segment": (HEAD, "malformed"),
    "empty": ("", "malformed"),
    "dots only": ("..", "malformed"),
    "signature padded with =": (VALID + "=" * (-len(SIG) % 4), "accepted"),
    "signature with one = too many": (VALID + "=" * (-len(SIG) % 4 + 1), "malformed"),
    "signed padded header and payload": (raw_token(
        json.dumps({"alg": "RS256", "kid": RSA_KID}).encode() + b" ",
        json.dumps(good_claims()).encode(),
        encode=lambda data: base64.urlsafe_b64encode(data).decode()), "accepted"),
    "header with non-canonical trailing bits": (replace_segment(
        VALID, 0, non_canonical_last_char(HEAD)), "malformed"),
    "signature with non-canonical trailing bits": (replace_segment(
        VALID, 2, non_canonical_last_char(SIG)), "malformed"),
    "standard base64 characters": (VALID.replace("-", "+").replace("_", "/"),
                                   "malformed"),
    "a space inside": (VALID[:20] + " " + VALID[20:], "malformed"),
    "a trailing newline": (VALID + "\n", "malformed"),
    "a leading space": (" " + VALID, "malformed"),
    "a non-ASCII character": (VALID[:20] + "é" + VALID[21:], "malformed"),
    "a lone surrogate": (VALID[:20] + "\udcff" + VALID[21:], "malformed"),
    "segment of length 1 mod 4": (replace_segment(VALID, 1, BODY + "A" * (
        (1 - len(BODY)) % 4)), "malformed"),
    "crit b64 with b64 true": (token(header={"crit": ["b64"], "b64": True}), "accepted"),
    "crit unknown": (token(header={"crit": ["exp"], "exp": 1}), "malformed"),
    "crit empty": (token(header={"crit": []}), "malformed"),
    "crit a string": (token(header={"crit": "b64", "b64": True}), "malformed"),
    "crit b64 absent from the header": (token(header={"crit": ["b64"]}), "malformed"),
    "b64 false with a payload": (token(header={"crit": ["b64"], "b64": False}),
                                 "malformed"),
    "b64 false, detached (empty) payload": (replace_segment(token(header={
        "crit": ["b64"], "b64": False}), 1, ""), "the token is invalid"),
    "b64 false without crit, empty payload": (replace_segment(token(header={
        "b64": False}), 1, ""), "the token is invalid"),
    "b64 a string (not false)": (token(header={"b64": "false"}), "accepted"),
    "jku and jwk headers are ignored": (token(header={
        "jku": "https://evil.example/keys", "jwk": public_jwk(EC_KEY)}), "accepted"),
}


@pytest.mark.parametrize("name", list(CORPUS))
def test_the_corpus_gets_pyjwts_answer(name: str) -> None:
    value, expected = CORPUS[name]
    outcome, detail = assert_same(value)
    if expected == "accepted":
        assert outcome == "accepted", detail
        assert json.loads(detail)["sub"] == "alice"
    else:
        assert outcome == "refused" and expected in detail, detail


# --- hypothesis: mutations of a valid token ------------------------------------------

TOKEN_CHARACTERS = st.sampled_from(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.+/ \t%é")


@st.composite
def mutated(draw: st.DrawFn, base: str) -> str:
    value = base
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.integers(0, len(value)))
        action = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        if action == "replace" and where < len(value):
            value = value[:where] + draw(TOKEN_CHARACTERS) + value[where + 1:]
        elif action == "insert":
            value = value[:where] + draw(TOKEN_CHARACTERS) + value[where:]
        elif action == "delete":
            value = value[:where] + value[where + 1:]
        else:
            value = value[:where]
    return value


@PROPERTY
@given(st.sampled_from([VALID, VALID_EC]).flatmap(mutated))
def test_character_mutations_get_pyjwts_answer(value: str) -> None:
    assert_same(value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8)
#: Times around NOW and its leeway, as numbers and as strings.
times = st.integers(T - 3 * LEEWAY_SECONDS, T + 3 * LEEWAY_SECONDS).flatmap(
    lambda t: st.sampled_from([t, str(t), t + 0.5, float(t)]))
claim_values = {
    "exp": times | json_values, "nbf": times | json_values, "iat": times | json_values,
    "iss": st.sampled_from([ISSUER, ISSUER + "/", ISSUER.upper(), ""]) | json_values,
    "aud": st.sampled_from([AUDIENCES[0], AUDIENCES, ["x", AUDIENCES[1]], [], "x"])
    | json_values,
    "sub": st.sampled_from(["alice"]) | json_values, "jti": json_values,
}


@st.composite
def claim_changes(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.sets(st.sampled_from(sorted(claim_values)), min_size=1, max_size=4))
    return {name: draw(st.just(REMOVE) | claim_values[name]) for name in names}


@PROPERTY
@given(st.sampled_from(["RS256", "ES256"]), claim_changes())
def test_signed_claim_mutations_get_pyjwts_answer(alg: str, changes: dict[str, Any]) -> None:
    assert_same(token(alg, **changes))


header_values = {
    "alg": st.sampled_from(["RS256", "ES256", "HS256", "none", "rs256", ""]) | json_values,
    "kid": st.sampled_from([RSA_KID, EC_KID, "", "other"]) | json_values,
    "crit": st.sampled_from([["b64"], [], ["exp"], "b64", ["b64", "b64"]]) | json_values,
    "b64": st.sampled_from([True, False, "false", 0]) | json_values,
    "typ": json_values,
}


@st.composite
def header_changes(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.sets(st.sampled_from(sorted(header_values)), min_size=1, max_size=3))
    return {name: draw(st.just(REMOVE) | header_values[name]) for name in names}


@PROPERTY
@given(st.sampled_from(["RS256", "ES256"]), header_changes(), st.booleans())
def test_signed_header_mutations_get_pyjwts_answer(alg: str, changes: dict[str, Any],
                                                    detach: bool) -> None:
    value = token(alg, header=changes)
    assert_same(replace_segment(value, 1, "") if detach else value)


# --- JWK parsing ---------------------------------------------------------------------

P384 = ec.generate_private_key(ec.SECP384R1())
RSA_1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (the point)


def _with_coordinate(jwk: dict[str, Any], name: str, data: bytes) -> dict[str, Any]:
    return {**jwk, name: b64(data)}


EC_JWK = public_jwk(EC_KEY, kid=EC_KID)
RSA_JWK = public_jwk(RSA_KEY, kid=RSA_KID)
X = base64.urlsafe_b64decode(EC_JWK["x"] + "==")

JWK_SAME: dict[str, tuple[dict[str, Any], bool]] = {
    "RSA with alg RS256": ({**RSA_JWK, "alg": "RS256"}, True),
    "RSA without alg": (RSA_JWK, True),
    "RSA with alg ES256": ({**RSA_JWK, "alg": "ES256"}, False),
    "RSA with alg HS256": ({**RSA_JWK, "alg": "HS256"}, False),
    "RSA without kty": ({k: v for k, v in RSA_JWK.items() if k != "kty"}, False),
    "RSA with kty rsa": ({**RSA_JWK, "kty": "rsa"}, False),
    "RSA with n not a string": ({**RSA_JWK, "n": 12345}, False),
    # e = 1 would make every signature its own message: anyone could sign (cryptography
    # refuses e < 3 and even e, for both).
    "RSA with e 1": ({**RSA_JWK, "e": b64(b"\x01")}, False),
    "RSA with e 4": ({**RSA_JWK, "e": b64(b"\x04")}, False),
    "EC P-256 with alg ES256": ({**EC_JWK, "alg": "ES256"}, True),
    "EC P-256 without alg": (EC_JWK, True),
    "EC with alg RS256": ({**EC_JWK, "alg": "RS256"}, False),
    "EC without crv": ({k: v for k, v in EC_JWK.items() if k != "crv"}, False),
    "EC with crv P-256 and 31-byte x": (_with_coordinate(EC_JWK, "x", X[1:]), False),
    "EC with crv P-256 and 33-byte x": (_with_coordinate(EC_JWK, "x", b"\0" + X), False),
    "EC without y": ({k: v for k, v in EC_JWK.items() if k != "y"}, False),
    "EC with crv Ed25519": ({**EC_JWK, "crv": "Ed25519"}, False),
    "RSA without n": ({k: v for k, v in RSA_JWK.items() if k != "n"}, False),
    "no kty at all": ({"kid": "x", "alg": "RS256"}, False),
}


@pytest.mark.parametrize("name", list(JWK_SAME))
def test_jwk_parsing_agrees_with_pyjwk(name: str) -> None:
    entry, usable = JWK_SAME[name]
    try:
        jwt.PyJWK(entry)
        pyjwt_usable = True
    except jwt.PyJWTError:
        pyjwt_usable = False
    try:
        jws.parse_jwk(entry)
        our_usable = True
    except jws.InvalidKey:
        our_usable = False
    assert (our_usable, pyjwt_usable) == (usable, usable)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_jwk_parsing_differs_only_where_stricter() -> None:
    """PyJWK builds these keys; parse_jwk refuses them, each on purpose."""
    stricter = {
        # RFC 7518 section 3.4: ES256 is ECDSA on P-256. PyJWK pairs ES256 with any
        # curve whose coordinates have that curve's length.
        "ES256 on P-384": public_jwk(P384, kid="p384", alg="ES256"),
        # Only RS256/ES256 tokens are accepted; a key for another algorithm can never
        # verify one (PyJWT refused at "does not match its key", we at "unknown").
        "RSA with alg RS512": {**RSA_JWK, "alg": "RS512"},
        "RSA with alg PS256": {**RSA_JWK, "alg": "PS256"},
        # No HMAC at all: a symmetric key in a public JWKS is a misconfiguration.
        "oct": {"kty": "oct", "k": b64(b"k" * 32), "kid": "h"},
        "Ed25519": {"kty": "OKP", "crv": "Ed25519", "x": b64(bytes(32)), "kid": "o"},
        # RFC 7518 section 3.3: "A key of size 2048 bits or larger MUST be used" with RS256.
        "RSA of 1024 bits": public_jwk(RSA_1024, kid="r1024", alg="RS256"),
    }
    for name, entry in stricter.items():
        jwt.PyJWK(entry)  # PyJWT builds it
        with pytest.raises(jws.InvalidKey):
            jws.parse_jwk(entry)
        assert oracle(token(header={"kid": entry["kid"]}), [entry])[0] == "refused", name
        assert ours(token(header={"kid": entry["kid"]}), [entry]) == (
            "refused", "the token's signing key is unknown"), name


def test_a_token_signed_by_an_rsa_key_under_2048_bits_is_refused() -> None:
    """PyJWT verifies RS256 with any RSA key the JWKS lists; RFC 7518 section 3.3 says a
    key of 2048 bits or more MUST be used, and 1024-bit moduli are within reach of
    factoring, after which anyone could sign as the issuer. So a JWKS entry under 2048
    bits is no key at all for us: its tokens are refused as signed by an unknown key."""
    entry = public_jwk(RSA_1024, kid="r1024", alg="RS256")
    signing_input = (f"{b64(json.dumps({'alg': 'RS256', 'kid': 'r1024'}).encode())}."
                     f"{b64(json.dumps(good_claims()).encode())}")
    mark = RSA_1024.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    weak = f"{signing_input}.{b64(mark)}"
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):  # PyJWT only warns
        assert oracle(weak, [entry])[0] == "accepted"
    assert ours(weak, [entry]) == ("refused", "the token's signing key is unknown")
    assert jws.parse_jwk({**RSA_JWK, "alg": "RS256"}).alg == "RS256"  # 2048 bits: fine


def test_an_ec_point_off_the_curve_is_refused_when_first_used() -> None:
    """PyJWK refuses an off-curve point when the JWKS is read; parse_jwk only checks its
    shape, so that reading a JWKS never imports the EC modules (most IdPs sign with RS256),
    and the point is refused on the first ES256 token that names it."""
    y = base64.urlsafe_b64decode(EC_JWK["y"] + "==")
    entry = _with_coordinate({**EC_JWK, "alg": "ES256"}, "y", bytes([y[0] ^ 1]) + y[1:])
    with pytest.raises(jwt.PyJWTError):
        jwt.PyJWK(entry)
    assert isinstance(jws.parse_jwk(entry), jws.EcKey)
    assert ours(VALID_EC, [entry]) == ("refused", "the token is invalid")
    assert oracle(VALID_EC, [entry]) == ("refused", "the token's signing key is unknown")
