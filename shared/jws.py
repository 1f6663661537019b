"""Caller JWTs as compact JWS (RFC 7515): RS256 and ES256 signatures, JWK public keys and
the JWT claims checks the service relies on.

Why not PyJWT: ``import jwt`` costs ~30 ms in a fresh Functions worker (measured after
``import asyncio, azure.functions``, as the worker has them), about half of it
``cryptography.x509`` and the SSH/PEM serialization that ``jwt.algorithms`` loads for
features this service never uses (X.509, PEM and SSH keys, HMAC, EdDSA). Every cold start
pays it before its first response. This module parses tokens and JWKs with the standard
library and leaves all signature math to ``cryptography`` (RSASSA-PKCS1-v1_5 and ECDSA
P-256, both with SHA-256): the RSA primitives are imported up front (~6 ms), the EC ones
only on the first ES256 verification, since most identity providers sign with RS256.

Behaviour is PyJWT 2.x's ``jwt.decode`` (the version pinned in constraints.txt) with the
options shared.auth used: strict base64url (trailing ``=`` tolerated, non-canonical bits
refused), a JSON-object header, ``crit`` limited to ``b64`` (and ``b64: false`` refused,
as there is never a detached payload), required ``exp``/``iss``/``aud``, ``iat``/``nbf``/
``exp`` read as ``int(value)`` with a leeway, ``iss`` compared exactly, ``aud`` a string
or a list of strings that must contain one configured audience, string ``sub``/``jti``.
tests/unit/test_jws_differential.py holds it to PyJWT as the oracle.
Every failure is an :class:`~shared.errors.Unauthenticated` with the message shared.auth
has always given for it.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .errors import Unauthenticated

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

ALGORITHMS = ("RS256", "ES256")
MAX_KID_LENGTH = 256
#: Header parameters a token may list in ``crit`` (RFC 7515 section 4.1.11): as PyJWT,
#: only ``b64`` (RFC 7797), and only its default ``true`` is accepted below.
_UNDERSTOOD_CRIT = frozenset({"b64"})
_BASE64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_P256_COORDINATE_BYTES = 32
#: RFC 7518 section 3.3: "A key of size 2048 bits or larger MUST be used" for RS256.
_RSA_MIN_BITS = 2048

_MALFORMED = "the bearer token is malformed"
_INVALID = "the token is invalid"


class InvalidKey(ValueError):
    """A JWK this module cannot use (wrong type, curve, algorithm or numbers)."""


@dataclass(frozen=True, slots=True)
class RsaKey:
    """An RS256 public key."""

    public_key: rsa.RSAPublicKey
    alg: ClassVar[str] = "RS256"

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self.public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True


class EcKey:
    """An ES256 (P-256) public key. The point is turned into a ``cryptography`` key on
    first use, so a JWKS that merely lists an EC key does not import the EC modules."""

    __slots__ = ("_public_key", "x", "y")
    alg: ClassVar[str] = "ES256"

    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y
        self._public_key: EllipticCurvePublicKey | None = None

    def __repr__(self) -> str:
        return f"EcKey(x={self.x:#x}, y={self.y:#x})"

    def verify(self, signature: bytes, message: bytes) -> bool:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        if self._public_key is None:
            # ValueError if the point is not on P-256: the caller's "the token is invalid".
            self._public_key = ec.EllipticCurvePublicNumbers(
                self.x, self.y, ec.SECP256R1()).public_key()
        # JWS carries r || s, each 32 bytes (RFC 7518 section 3.4); cryptography wants DER.
        if len(signature) != 2 * _P256_COORDINATE_BYTES:
            return False
        r = int.from_bytes(signature[:_P256_COORDINATE_BYTES], "big")
        s = int.from_bytes(signature[_P256_COORDINATE_BYTES:], "big")
        try:
            self._public_key.verify(encode_dss_signature(r, s), message,
                                    ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


Key = RsaKey | EcKey


def parse_jwk(jwk: Mapping[str, Any]) -> Key:
    """The public key of one JWKS entry, or :class:`InvalidKey`.

    As PyJWT's ``PyJWK``: the algorithm is the entry's ``alg``, else RS256 for ``kty``
    RSA and ES256 for EC; an ``alg`` that contradicts ``kty`` is refused, and the key
    numbers are decoded as leniently as PyJWT does (an issuer's own JWKS, fetched over
    https). Stricter on purpose: only RS256 and ES256, RSA moduli of 2048 bits or more
    (RFC 7518 section 3.3), and ES256 only on P-256 with 32-byte coordinates (section
    3.4), whatever the entry's ``crv`` says.
    """
    kty, alg = jwk.get("kty"), jwk.get("alg")
    if not alg:
        alg = "RS256" if kty == "RSA" else "ES256" if kty == "EC" else None
    try:
        if alg == "RS256" and kty == "RSA":
            numbers = rsa.RSAPublicNumbers(_uint(jwk["e"]), _uint(jwk["n"]))
            if numbers.n.bit_length() >= _RSA_MIN_BITS:
                return RsaKey(numbers.public_key())
        if alg == "ES256" and kty == "EC" and jwk.get("crv") == "P-256":
            x, y = _jwk_bytes(jwk["x"]), _jwk_bytes(jwk["y"])
            if len(x) == len(y) == _P256_COORDINATE_BYTES:
                return EcKey(int.from_bytes(x, "big"), int.from_bytes(y, "big"))
    except (KeyError, TypeError, ValueError, AttributeError):
        pass
    raise InvalidKey("not a usable RS256 or ES256 public key")


def _jwk_bytes(value: Any) -> bytes:
    """PyJWT's ``base64url_decode``: pad, then the standard library's forgiving decoder."""
    if isinstance(value, str):
        value = value.encode("ascii")
    if not isinstance(value, bytes):
        raise TypeError("a JWK member must be a string")
    return base64.urlsafe_b64decode(value + b"=" * (-len(value) % 4))


def _uint(value: Any) -> int:
    return int.from_bytes(_jwk_bytes(value), "big")


@dataclass(frozen=True, slots=True)
class Token:
    """A compact JWS whose header passed every check that needs no key."""

    alg: str
    kid: str
    header: dict[str, Any]
    signing_input: bytes
    payload: bytes
    signature: bytes


def parse(token: str) -> Token:
    """Split and decode ``token`` and check its header: an accepted ``alg`` and a ``kid``.

    Nothing here is trusted yet; :func:`verify` checks the signature with the key the
    caller looks up by :attr:`Token.kid`."""
    try:
        raw = token.encode("ascii")
    except UnicodeError:
        raise Unauthenticated(_MALFORMED) from None
    segments = raw.split(b".")
    if len(segments) != 3:
        raise Unauthenticated(_MALFORMED)
    header_segment, payload_segment, signature_segment = segments
    try:
        header = json.loads(_segment(header_segment))
    except (ValueError, RecursionError):
        # RecursionError: a header of thousands of nested arrays (json.loads recurses).
        raise Unauthenticated(_MALFORMED) from None
    if not isinstance(header, dict):
        raise Unauthenticated(_MALFORMED)
    if header.get("b64", True) is False and payload_segment:
        raise Unauthenticated(_MALFORMED)
    payload = _segment(payload_segment)
    signature = _segment(signature_segment)
    if "kid" in header and not isinstance(header["kid"], str):
        raise Unauthenticated(_MALFORMED)
    if "crit" in header:
        _check_crit(header)
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise Unauthenticated("the token's algorithm is not accepted")
    if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
        raise Unauthenticated("the token names no signing key")
    return Token(alg=alg, kid=kid, header=header,
                 signing_input=header_segment + b"." + payload_segment,
                 payload=payload, signature=signature)


def _segment(segment: bytes) -> bytes:
    """Strict base64url, as PyJWT: up to two trailing ``=`` if the length is then a
    multiple of 4, nothing outside the alphabet, and the canonical encoding only (no
    stray bits in the last character), so one token has exactly one spelling."""
    stripped = segment.rstrip(b"=")
    padding_length = len(segment) - len(stripped)
    if padding_length > 2 or (padding_length and len(segment) % 4):
        raise Unauthenticated(_MALFORMED)
    if len(stripped) % 4 == 1 or stripped.translate(None, _BASE64URL_ALPHABET):
        raise Unauthenticated(_MALFORMED)
    try:
        decoded = base64.urlsafe_b64decode(stripped + b"=" * (-len(stripped) % 4))
    except binascii.Error:
        raise Unauthenticated(_MALFORMED) from None
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != stripped:
        raise Unauthenticated(_MALFORMED)
    return decoded


def _check_crit(header: Mapping[str, Any]) -> None:
    crit = header["crit"]
    if not isinstance(crit, list) or not crit:
        raise Unauthenticated(_MALFORMED)
    for name in crit:
        if not isinstance(name, str) or name not in _UNDERSTOOD_CRIT or name not in header:
            raise Unauthenticated(_MALFORMED)


def verify(token: Token, key: Key, *, audiences: Sequence[str], issuer: str,
           leeway: float, now: float | None = None) -> dict[str, Any]:
    """The claims of ``token`` if ``key`` signed it and they are valid ``now``."""
    if key.alg != token.alg:
        raise Unauthenticated("the token's algorithm does not match its key")
    try:
        if token.header.get("b64", True) is False:
            # RFC 7797 unencoded payload: it would be detached, and no caller sends one.
            raise Unauthenticated(_INVALID)
        if not key.verify(token.signature, token.signing_input):
            raise Unauthenticated(_INVALID)
        claims = json.loads(token.payload)
        if not isinstance(claims, dict):
            raise Unauthenticated(_INVALID)
        _check_claims(claims, audiences, issuer, leeway,
                      time.time() if now is None else now)
    except (RecursionError, OverflowError, ValueError, TypeError):
        # Signed by the issuer but hostile anyway (deeply nested claims, numbers beyond
        # float range, an EC point off the curve): an unusable credential, never a 500.
        raise Unauthenticated(_INVALID) from None
    return claims


def _check_claims(claims: dict[str, Any], audiences: Sequence[str], issuer: str,
                  leeway: float, now: float) -> None:
    """RFC 7519 section 4.1 as PyJWT's ``_validate_claims`` checks it, in its order (so
    a token both expired and not yet issued gets PyJWT's answer)."""
    for name in ("exp", "iss", "aud"):
        if claims.get(name) is None:
            # e.g. an Amazon Cognito access token, which carries client_id but no aud
            raise Unauthenticated(f"the token has no '{name}' claim")
    if "iat" in claims and _time(claims["iat"]) > now + leeway:
        raise Unauthenticated("the token is not yet valid")
    if "nbf" in claims and _time(claims["nbf"]) > now + leeway:
        raise Unauthenticated("the token is not yet valid")
    if _time(claims["exp"]) <= now - leeway:
        raise Unauthenticated("the token has expired")
    if claims["iss"] != issuer or not isinstance(claims["iss"], str):
        raise Unauthenticated("the token is from another issuer")
    aud = claims["aud"]
    if not aud:
        raise Unauthenticated("the token has no 'aud' claim")
    granted = [aud] if isinstance(aud, str) else aud
    if (not isinstance(granted, list) or not all(isinstance(a, str) for a in granted)
            or not any(a in granted for a in audiences)):
        raise Unauthenticated("the token is for another audience")
    for name in ("sub", "jti"):
        if name in claims and not isinstance(claims[name], str):
            raise Unauthenticated(_INVALID)


def _time(value: Any) -> int:
    """A NumericDate as PyJWT reads it: ``int(value)``, so ``1.5`` and ``"17"`` pass and
    ``10**400`` too; anything else is "the token is invalid"."""
    try:
        return int(value)
    except (ValueError, TypeError, OverflowError):
        raise Unauthenticated(_INVALID) from None
