"""RS256 access tokens shaped like ACS identity tokens, and the persisted keys.

Real ACS tokens are RS256 JWTs whose header carries ``kid`` and ``x5t`` and whose payload is
exactly ``skypeid, scp, csi, exp, acsScope, resourceId, iat`` (a sanitised real token decoded in
Azure/azure-cli-extensions src/communication/azext_communication/tests/latest/
test_communication_chat_scenario.py); they are about 800 characters long.  The emulator signs
with a 2048-bit RSA key, so its tokens have the same header, claims and size, and carry no
private claim: revocation state lives in the emulator (see ``state.py``).

Payload segments are always free of ``-`` and ``_``: the Python SDK's
``CommunicationTokenCredential`` decodes the payload with *standard* base64.
For ASCII input only the last sextet of each 3-byte group can reach the values
62/63 (``-``/``_`` in base64url), and only for the bytes ``>``, ``?``, ``~`` and
DEL.  JSON escapes DEL and non-ASCII with ``ensure_ascii``; the remaining three
characters can only appear inside JSON strings, where they are written as
``\\u003e``/``\\u003f``/``\\u007e``.  So every payload we encode is clean by
construction (and asserted).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from localdev import tls
from localdev.files import write_atomic

SIGNING_KEY_FILE = "acs-signing-key.pem"
SIGNING_CERT_FILE = "acs-signing-cert.pem"
ACCESS_KEY_FILE = "acs-access-key.txt"
RESOURCE_ID_FILE = "acs-resource-id.txt"

_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()
#: Signatures are deterministic (PKCS#1 v1.5): identical payloads within one second (same
#: identity, scopes and expiry) reuse one signature. Bounded; RSA signing is the hot path.
_SIGNATURE_CACHE_SIZE = 1024
_CLEAN_TRANS = str.maketrans({">": "\\u003e", "?": "\\u003f", "~": "\\u007e"})


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64url_decode(data: str | bytes) -> bytes:
    if isinstance(data, str):
        data = data.encode("ascii")
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


def clean_payload_json(claims: dict[str, Any]) -> bytes:
    """Compact JSON whose base64url encoding contains no '-' or '_'."""
    text = json.dumps(claims, separators=(",", ":"), ensure_ascii=True)
    return text.translate(_CLEAN_TRANS).encode("ascii")


class TokenError(Exception):
    """A token failed verification; ``reason`` is a short machine-readable word."""

    def __init__(self, reason: str, claims: dict[str, Any] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.claims = claims


@dataclass
class SigningMaterial:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate


def load_or_create_signing(directory: Path) -> SigningMaterial:
    """The token signing key + self-signed cert (for x5t/x5c), created once per DIR."""
    key_path, cert_path = directory / SIGNING_KEY_FILE, directory / SIGNING_CERT_FILE
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if isinstance(key, rsa.RSAPrivateKey) and tls.same_key(cert, key):
            return SigningMaterial(key=key, cert=cert)
    except (OSError, ValueError):
        pass
    # An older data dir may hold an ES256 key: replace it (tokens signed by it become invalid).
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = _dt.datetime.now(_dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ACS emulator token signing")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    write_atomic(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        private=True,
    )
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), private=True)
    return SigningMaterial(key=key, cert=cert)


def load_or_create_access_key(directory: Path, given: str | None) -> str:
    if given:
        try:
            raw = base64.b64decode(given, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("--access-key must be base64") from exc
        if not raw:
            raise ValueError("--access-key must not be empty")
        return given
    path = directory / ACCESS_KEY_FILE
    try:
        value = path.read_text().strip()
        if value and base64.b64decode(value, validate=True):
            return value
    except (OSError, ValueError):
        pass
    value = base64.b64encode(os.urandom(32)).decode("ascii")
    write_atomic(path, value.encode("ascii") + b"\n", private=True)
    return value


def load_or_create_resource_id(directory: Path, given: str | None) -> str:
    if given:
        return str(uuid.UUID(given))
    path = directory / RESOURCE_ID_FILE
    try:
        return str(uuid.UUID(path.read_text().strip()))
    except (OSError, ValueError):
        pass
    value = str(uuid.uuid4())
    write_atomic(path, value.encode("ascii") + b"\n", private=True)
    return value


def _int_b64(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode("ascii")


class TokenSigner:
    """Signs and verifies RS256 JWTs with one precomputed key (loaded once per process)."""

    def __init__(self, material: SigningMaterial):
        self._key = material.key
        self._pub = material.key.public_key()
        der = material.cert.public_bytes(serialization.Encoding.DER)
        self.x5t = b64url(hashlib.sha1(der).digest()).decode("ascii")  # noqa: S324 (x5t is SHA-1 by definition)
        # Entra-style: kid is the certificate thumbprint too (the real value's format is unknown).
        self.kid = self.x5t
        nums = self._pub.public_numbers()
        self.jwk: dict[str, Any] = {
            "kty": "RSA",
            "n": _int_b64(nums.n),
            "e": _int_b64(nums.e),
            "kid": self.kid,
            "x5t": self.x5t,
            "use": "sig",
            "alg": "RS256",
            "x5c": [base64.b64encode(der).decode("ascii")],
        }
        header = {"alg": "RS256", "kid": self.kid, "x5t": self.x5t, "typ": "JWT"}
        self._header_b64 = b64url(json.dumps(header, separators=(",", ":")).encode())
        self._prefix = self._header_b64 + b"."
        self._cache: dict[bytes, str] = {}

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk]}

    def sign(self, claims: dict[str, Any]) -> str:
        payload = b64url(clean_payload_json(claims))
        if b"-" in payload or b"_" in payload:  # pragma: no cover - impossible by construction
            raise AssertionError("token payload segment is not standard-base64 clean")
        cached = self._cache.get(payload)
        if cached is not None:
            return cached
        signing_input = self._prefix + payload
        sig = self._key.sign(signing_input, _PKCS1, _SHA256)
        token = (signing_input + b"." + b64url(sig)).decode("ascii")
        if len(self._cache) >= _SIGNATURE_CACHE_SIZE:
            self._cache.clear()
        self._cache[payload] = token
        return token

    def verify(self, token: str) -> dict[str, Any]:
        """Verify signature and shape; return claims (expiry is the caller's business)."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("malformed")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            sig = b64url_decode(parts[2])
        except (ValueError, binascii.Error) as exc:
            raise TokenError("malformed") from exc
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise TokenError("malformed")
        if header.get("alg") != "RS256" or header.get("kid") != self.kid:
            raise TokenError("bad-signature", claims)
        try:
            self._pub.verify(sig, f"{parts[0]}.{parts[1]}".encode("ascii"), _PKCS1, _SHA256)
        except (InvalidSignature, UnicodeEncodeError) as exc:
            raise TokenError("bad-signature", claims) from exc
        return claims


TICKS_PER_SECOND = 10_000_000  # .NET ticks (100 ns): the service's clock resolution


def iso_expires_on(ticks: int, digits: int | None = None) -> str:
    """``expiresOn`` written like the service (a .NET ``DateTimeOffset``).

    ``ticks`` is the instant in 100 ns units since the epoch.  By default the fraction has up
    to 7 digits with trailing zeros dropped, and no fraction at all when it is zero:
    ``2023-01-10T17:56:00.7844833+00:00`` (Azure/azure-sdk-for-net .../SessionRecords/
    CommunicationIdentityClientLiveTests/CreateUserAndTokenWithChatScope.json),
    ``2022-11-16T09:47:55.688402+00:00`` (Azure/azure-sdk-for-python .../recordings/
    test_communication_identity_client.pyTestClienttest_get_token.json).  ``digits``
    forces exactly that many fractional digits (0..7, truncated) so tests can pin a shape.
    """
    seconds, frac = divmod(ticks, TICKS_PER_SECOND)
    base = _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    text = f"{frac:07d}"
    text = text.rstrip("0") if digits is None else text[:digits]
    return f"{base}.{text}+00:00" if text else f"{base}+00:00"
