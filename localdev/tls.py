"""A local certificate authority and server certificates for local HTTPS tools.

Reusable by every local tool that has to speak HTTPS to clients which insist on
it (the ACS identity emulator, Azurite over HTTPS, ...)::

    from localdev.tls import ensure_ca, ensure_server_cert
    ca = ensure_ca(data_dir)                       # DIR/ca.pem + DIR/ca-key.pem
    cert_path, key_path = ensure_server_cert(data_dir, ca)   # DIR/server.pem + server-key.pem

Clients trust ``ca.cert_path`` (``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE``,
``NODE_EXTRA_CA_CERTS``, ``verify=``...).  Files are created once and reused; a
server certificate is re-issued when it was not signed by the current CA, when
it does not cover the requested hosts, or when it is close to expiry.  Creation
is serialised with a lock file so that concurrent tools sharing a directory
agree on one CA. ``trustme`` issues both certificates; this module keeps them on disk.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import ipaddress
import os
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .files import write_atomic

__all__ = [
    "CA",
    "client_ssl_context",
    "ensure_ca",
    "ensure_server_cert",
    "server_ssl_context",
]

CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca-key.pem"
_SERVER_VALID_DAYS = 397
_RENEW_BEFORE = _dt.timedelta(days=30)


def same_key(cert: x509.Certificate, key: object) -> bool:
    """Whether ``key`` (a private key) belongs to ``cert``."""
    pub = getattr(key, "public_key", None)
    if pub is None:
        return False
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return bool(cert.public_key().public_bytes(der, fmt) == pub().public_bytes(der, fmt))


@dataclass(frozen=True)
class CA:
    """A local certificate authority loaded from disk."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path
    key_path: Path

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    lock_path = directory / ".tls.lock"
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _load_ca(cert_path: Path, key_path: Path) -> CA | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if not same_key(cert, key):
        return None
    if cert.not_valid_after_utc - _RENEW_BEFORE < _now():
        return None
    return CA(cert=cert, key=key, cert_path=cert_path, key_path=key_path)


def ensure_ca(directory: str | os.PathLike[str], common_name: str = "localdev CA") -> CA:
    """Return the CA stored in ``directory`` (ca.pem, ca-key.pem), creating it once."""
    d = Path(directory)
    cert_path, key_path = d / CA_CERT_NAME, d / CA_KEY_NAME
    existing = _load_ca(cert_path, key_path)
    if existing is not None:
        return existing
    with _dir_lock(d):
        existing = _load_ca(cert_path, key_path)
        if existing is not None:
            return existing
        # A random unit name: each directory's CA has its own subject.
        ca = trustme.CA(
            path_length=0,
            organization_name="localdev (NOT A REAL CA)",
            organization_unit_name=f"{common_name} {os.urandom(4).hex()}",
        )
        # Key first: a reader that finds ca.pem always finds its key.
        write_atomic(key_path, ca.private_key_pem.bytes(), private=True)
        write_atomic(cert_path, ca.cert_pem.bytes())
        loaded = _load_ca(cert_path, key_path)
        if loaded is None:  # pragma: no cover - trustme issues an EC CA valid until 3000
            raise RuntimeError(f"{cert_path}: the new CA does not load")
        return loaded


def _san_entries(hosts: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for h in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return out


def _server_cert_ok(cert_path: Path, key_path: Path, ca: CA, hosts: list[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    if not same_key(cert, key):
        return False
    if cert.issuer != ca.cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    if cert.not_valid_after_utc - _RENEW_BEFORE < _now():
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = set(san)
    return all(entry in have for entry in _san_entries(hosts))


def ensure_server_cert(
    directory: str | os.PathLike[str],
    ca: CA,
    name: str = "server",
    hosts: Iterable[str] = ("localhost", "127.0.0.1"),
) -> tuple[Path, Path]:
    """Return (cert_path, key_path) of a server certificate signed by ``ca``.

    The certificate chain file ``DIR/<name>.pem`` holds the leaf then the CA;
    the key is ``DIR/<name>-key.pem``.  Reused while valid for ``hosts``.
    """
    d = Path(directory)
    host_list = list(hosts)
    if not host_list:
        raise ValueError("hosts must not be empty")
    cert_path, key_path = d / f"{name}.pem", d / f"{name}-key.pem"
    if _server_cert_ok(cert_path, key_path, ca, host_list):
        return cert_path, key_path
    with _dir_lock(d):
        if _server_cert_ok(cert_path, key_path, ca, host_list):
            return cert_path, key_path
        now = _now()
        issuer = trustme.CA.from_pem(ca.pem, ca.key_path.read_bytes())
        leaf = issuer.issue_cert(
            *host_list,
            common_name=host_list[0],
            not_before=now - _dt.timedelta(minutes=5),
            not_after=now + _dt.timedelta(days=_SERVER_VALID_DAYS),
        )
        write_atomic(key_path, leaf.private_key_pem.bytes(), private=True)
        write_atomic(cert_path, leaf.cert_chain_pems[0].bytes() + ca.pem)
        return cert_path, key_path


def server_ssl_context(
    cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]
) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2+) for the given chain and key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.fspath(cert_path), os.fspath(key_path))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def client_ssl_context(ca_file: str | os.PathLike[str]) -> ssl.SSLContext:
    """A verifying client context that trusts ``ca_file``."""
    return ssl.create_default_context(cafile=os.fspath(ca_file))
