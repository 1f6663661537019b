"""Signing keys and persistent state of the local issuer, plus token minting.

Everything here works without the HTTP server: the data directory is the single source of truth.

Data directory layout::

    DIR/keys/<kid>.pem   private keys (PKCS#8 PEM, mode 0600); the kid is the RFC 7638 thumbprint
    DIR/keyring.json     {"RS256": [kid, ...], "ES256": [kid, ...]}; the last kid of a list signs
    DIR/state.json       tenantId, identityHeader, default managed identity ids (mode 0600)
    DIR/issuer.json      written by ``serve`` when it is ready (see server.py)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from localdev.files import write_atomic

try:  # POSIX only; on other platforms creation races are simply not guarded.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

DEFAULT_AUDIENCE = "api://acs-token-service"
TEAMS_AUDIENCE = "https://auth.msft.communication.azure.com"
TEAMS_SCOPES = (
    "https://auth.msft.communication.azure.com/Teams.ManageCalls "
    "https://auth.msft.communication.azure.com/Teams.ManageChats"
)
ENTRA_ISSUER_FORMAT = "https://sts.windows.net/{tenant_id}/"
SUPPORTED_ALGS = ("RS256", "ES256")

KEYRING_FILE = "keyring.json"
STATE_FILE = "state.json"
ISSUER_FILE = "issuer.json"
KEYS_DIR = "keys"
LOCK_FILE = ".lock"

# Namespace for deriving stable ids of user-assigned managed identities from their selector.
_MI_NAMESPACE = uuid.UUID("6f1d3c2a-6b1e-4c55-9a53-0c7e5d1f4a10")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def public_jwk(key: PrivateKey) -> dict[str, str]:
    """The public JWK members (without kid/alg/use) of a private key, from PyJWT. Its
    ``key_ops`` is dropped: Entra ID's JWKS has none, and RFC 7638 thumbprints ignore it."""
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    elif isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        raise TypeError(f"unsupported key type {type(key).__name__}")
    return {k: str(v) for k, v in jwk.items() if k != "key_ops"}


def thumbprint(key: PrivateKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): a kid that is stable for a given key."""
    jwk = public_jwk(key)
    required = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _generate(alg: str) -> PrivateKey:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unsupported alg {alg!r}; expected one of {SUPPORTED_ALGS}")


def write_json_atomic(path: Path, obj: Any, mode: int = 0o644) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", private=mode == 0o600)


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Serialise creation/rotation between processes sharing a data dir."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_issuer_info(data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """DIR/issuer.json as written by the last ``serve`` (the server may have stopped since)."""
    path = Path(data_dir) / ISSUER_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private_key: PrivateKey

    def jwk(self) -> dict[str, str]:
        return {**public_jwk(self.private_key), "kid": self.kid, "alg": self.alg, "use": "sig"}


class IssuerKeys:
    """Keys and persistent state of a local issuer data directory.

    Use :meth:`load_or_create`; the constructor is internal.
    """

    def __init__(self, data_dir: Path, keys: Sequence[SigningKey], state: Mapping[str, Any]):
        self.data_dir = data_dir
        self._keys: list[SigningKey] = list(keys)
        self.tenant_id: str = state["tenantId"]
        self.identity_header: str = state["identityHeader"]
        self.mi_client_id: str = state["managedIdentity"]["clientId"]
        self.mi_principal_id: str = state["managedIdentity"]["principalId"]

    # ----------------------------------------------------------------- loading / persistence

    @classmethod
    def load_or_create(cls, data_dir: str | os.PathLike[str]) -> IssuerKeys:
        """Load the keys and state of ``data_dir``, creating whatever is missing (idempotent)."""
        path = Path(data_dir).resolve()
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        (path / KEYS_DIR).mkdir(mode=0o700, exist_ok=True)
        keyring_path = path / KEYRING_FILE
        state_path = path / STATE_FILE
        if not (keyring_path.exists() and state_path.exists()):
            with _locked(path):
                state = cls._read_json(state_path)
                if state is None:
                    state = {
                        "tenantId": str(uuid.uuid4()),
                        "identityHeader": secrets.token_urlsafe(32),
                        "managedIdentity": {
                            "clientId": str(uuid.uuid4()),
                            "principalId": str(uuid.uuid4()),
                        },
                    }
                    write_json_atomic(state_path, state, 0o600)
                keyring = cls._read_json(keyring_path) or {}
                changed = False
                for alg in SUPPORTED_ALGS:
                    if not keyring.get(alg):
                        keyring[alg] = [cls._create_key_file(path, alg).kid]
                        changed = True
                if changed:
                    write_json_atomic(keyring_path, keyring)
        return cls._load(path)

    @classmethod
    def _load(cls, path: Path) -> IssuerKeys:
        keyring = cls._read_json(path / KEYRING_FILE)
        state = cls._read_json(path / STATE_FILE)
        if not keyring or not state:
            raise RuntimeError(f"issuer data dir {path} is incomplete")
        keys: list[SigningKey] = []
        for alg in SUPPORTED_ALGS:
            for kid in keyring.get(alg, []):
                pem = (path / KEYS_DIR / f"{kid}.pem").read_bytes()
                private_key = serialization.load_pem_private_key(pem, password=None)
                if not isinstance(private_key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
                    raise RuntimeError(f"unexpected key type in {kid}.pem")
                keys.append(SigningKey(kid=kid, alg=alg, private_key=private_key))
        return cls(path, keys, state)

    @staticmethod
    def _read_json(path: Path) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    @staticmethod
    def _create_key_file(path: Path, alg: str) -> SigningKey:
        private_key = _generate(alg)
        kid = thumbprint(private_key)
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_atomic(path / KEYS_DIR / f"{kid}.pem", pem, private=True)
        return SigningKey(kid=kid, alg=alg, private_key=private_key)

    def rotate(self, alg: str = "RS256") -> str:
        """Add a new key for ``alg`` and make it the signing key; old keys stay in the JWKS."""
        if alg not in SUPPORTED_ALGS:
            raise ValueError(f"unsupported alg {alg!r}; expected one of {SUPPORTED_ALGS}")
        with _locked(self.data_dir):
            keyring = self._read_json(self.data_dir / KEYRING_FILE) or {}
            new = self._create_key_file(self.data_dir, alg)
            keyring.setdefault(alg, []).append(new.kid)
            write_json_atomic(self.data_dir / KEYRING_FILE, keyring)
        self._keys.append(new)
        return new.kid

    def reload(self) -> IssuerKeys:
        """A fresh view of the data dir (e.g. after another process rotated keys)."""
        return self._load(self.data_dir)

    # ----------------------------------------------------------------------- accessors

    @property
    def keys(self) -> list[SigningKey]:
        """All keys (RS256 first, then ES256; oldest first within an alg)."""
        return list(self._keys)

    def signing_key(self, alg: str = "RS256") -> SigningKey:
        for key in reversed(self._keys):
            if key.alg == alg:
                return key
        raise ValueError(f"unsupported alg {alg!r}; expected one of {SUPPORTED_ALGS}")

    @property
    def kid_rs256(self) -> str:
        return self.signing_key("RS256").kid

    @property
    def kid_es256(self) -> str:
        return self.signing_key("ES256").kid

    @property
    def rsa_private_key(self) -> rsa.RSAPrivateKey:
        key = self.signing_key("RS256").private_key
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    @property
    def ec_private_key(self) -> ec.EllipticCurvePrivateKey:
        key = self.signing_key("ES256").private_key
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    @property
    def entra_issuer(self) -> str:
        """The Entra v1 issuer used for managed identity and Teams tokens."""
        return ENTRA_ISSUER_FORMAT.format(tenant_id=self.tenant_id)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk() for key in self._keys]}

    def issuer_info(self) -> dict[str, Any] | None:
        return read_issuer_info(self.data_dir)

    # -------------------------------------------------------------------------- minting

    def sign(
        self,
        claims: Mapping[str, Any],
        alg: str = "RS256",
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """Sign arbitrary claims with the current key for ``alg`` (header kid set; override via
        ``headers``, e.g. ``{"kid": "unknown"}``)."""
        key = self.signing_key(alg)
        hdr: dict[str, Any] = {"kid": key.kid, "typ": "JWT"}
        if headers:
            hdr.update(headers)
        return jwt.encode(dict(claims), key.private_key, algorithm=alg, headers=hdr)

    def mint(
        self,
        sub: str,
        issuer: str | None = None,
        audience: str | None = None,
        roles: Sequence[str] = (),
        minutes: float = 60,
        alg: str = "RS256",
        oid: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A caller token as the local IdP issues it.

        ``issuer``/``audience`` default to DIR/issuer.json (the last ``serve``), else ValueError.
        Claims: iss, aud, sub, oid (= sub unless given), tid, iat, nbf, exp (= now + minutes;
        negative minutes give an expired token), roles (only when given), ver "2.0".
        ``extra_claims`` are merged last; a value of None removes that claim.
        """
        if issuer is None or audience is None:
            info = self.issuer_info() or {}
            issuer = issuer if issuer is not None else info.get("issuer")
            audience = audience if audience is not None else info.get("audience")
            if issuer is None:
                raise ValueError(
                    f"no issuer given and {self.data_dir / ISSUER_FILE} not found; "
                    "pass issuer= or start the server once"
                )
            if audience is None:
                audience = DEFAULT_AUDIENCE
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "sub": sub,
            "oid": oid if oid is not None else sub,
            "tid": self.tenant_id,
            "iat": now,
            "nbf": now,
            "exp": now + int(minutes * 60),
            "ver": "2.0",
        }
        if roles:
            if isinstance(roles, str):
                roles = (roles,)
            claims["roles"] = list(roles)
        return self.sign(_merge(claims, extra_claims), alg=alg, headers=headers)

    def mint_teams(
        self,
        oid: str,
        appid: str,
        minutes: float = 60,
        extra_claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """An Entra-like (v1) access token of a Teams user for the ACS Teams token exchange."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": TEAMS_AUDIENCE,
            "iss": self.entra_issuer,
            "iat": now,
            "nbf": now,
            "exp": now + int(minutes * 60),
            "appid": appid,
            "appidacr": "0",
            "idp": self.entra_issuer,
            "oid": oid,
            "sub": oid,
            "tid": self.tenant_id,
            "scp": TEAMS_SCOPES,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        return self.sign(_merge(claims, extra_claims), alg="RS256", headers=headers)

    def managed_identity_ids(
        self,
        client_id: str | None = None,
        object_id: str | None = None,
        mi_res_id: str | None = None,
    ) -> tuple[str, str]:
        """(client_id, principal_id) of the identity a managed identity request selects.

        No selector: the persisted system-assigned identity. A user-assigned selector gets stable
        ids derived from it (so the same selector always yields the same identity).
        """
        if client_id:
            return client_id, str(uuid.uuid5(_MI_NAMESPACE, f"client:{client_id.lower()}"))
        if object_id:
            return str(uuid.uuid5(_MI_NAMESPACE, f"object:{object_id.lower()}")), object_id
        if mi_res_id:
            key = f"res:{mi_res_id.lower()}"
            return (
                str(uuid.uuid5(_MI_NAMESPACE, key + ":client")),
                str(uuid.uuid5(_MI_NAMESPACE, key + ":principal")),
            )
        return self.mi_client_id, self.mi_principal_id

    def mint_managed_identity(
        self,
        resource: str,
        client_id: str | None = None,
        object_id: str | None = None,
        mi_res_id: str | None = None,
        minutes: float = 60,
    ) -> dict[str, Any]:
        """The App Service managed identity response (2019-08-01) for ``resource``.

        Returns {"access_token", "expires_on" (epoch seconds as a string), "resource",
        "token_type", "client_id"}. The token is an Entra v1 app token: iss sts.windows.net/<tid>/,
        aud = resource (a trailing "/.default" stripped), oid/sub = principal id, appid/azp.
        """
        if resource.endswith("/.default"):
            resource = resource[: -len("/.default")]
        mi_client_id, principal_id = self.managed_identity_ids(client_id, object_id, mi_res_id)
        now = int(time.time())
        exp = now + int(minutes * 60)
        claims: dict[str, Any] = {
            "aud": resource,
            "iss": self.entra_issuer,
            "iat": now,
            "nbf": now,
            "exp": exp,
            "aio": secrets.token_urlsafe(24),
            "appid": mi_client_id,
            "azp": mi_client_id,
            "appidacr": "2",
            "idp": self.entra_issuer,
            "idtyp": "app",
            "oid": principal_id,
            "sub": principal_id,
            "tid": self.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        if mi_res_id:
            claims["xms_mirid"] = mi_res_id
        token = self.sign(claims, alg="RS256")
        return {
            "access_token": token,
            "expires_on": str(exp),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": mi_client_id,
        }


def _merge(claims: dict[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    if extra:
        for name, value in extra.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
    return claims
