"""Fixtures for the local issuer tests: a shared issuer subprocess, TLS material, Azurite."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from localdev.issuer import IssuerProcess, IssuerServer

REPO_ROOT = Path(__file__).resolve().parents[2]
AZURITE_TABLE = REPO_ROOT / "node_modules" / ".bin" / "azurite-table"

# Environment variables that would make azure-identity/MSAL pick another MI flavour.
_MI_ENV_VARS = (
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
)
_PROXY_ENV_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")


@pytest.fixture(scope="session")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IssuerProcess]:
    """One issuer subprocess shared by the read-only tests (never rotate keys on it)."""
    with IssuerProcess(tmp_path_factory.mktemp("issuer")) as iss:
        yield iss


@pytest.fixture
def local_issuer(tmp_path: Path) -> Iterator[IssuerServer]:
    """A private in-process issuer (own data dir, fresh counters)."""
    with IssuerServer(tmp_path / "issuer") as iss:
        yield iss


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # no proxies for loopback
        yield session


@pytest.fixture
def mi_env(issuer: IssuerProcess, monkeypatch: pytest.MonkeyPatch) -> IssuerProcess:
    """IDENTITY_ENDPOINT/IDENTITY_HEADER pointing at the shared issuer, nothing else MI-ish."""
    for name in _MI_ENV_VARS + _PROXY_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in issuer.mi_env().items():
        monkeypatch.setenv(name, value)
    return issuer


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    cert: Path
    key: Path


def _write_tls(directory: Path) -> TlsFiles:
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer-tests throwaway CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.key.chmod(0o600)
    return files


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return _write_tls(tmp_path_factory.mktemp("tls"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Azurite:
    endpoint: str  # https://127.0.0.1:PORT/devstoreaccount1
    ca_cert: Path


@pytest.fixture(scope="session")
def azurite_oauth(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles
) -> Iterator[Azurite]:
    """azurite-table over HTTPS with --oauth basic (throwaway CA), in memory."""
    if not AZURITE_TABLE.exists():
        pytest.skip(f"{AZURITE_TABLE} not installed (npm ci)")
    workdir = tmp_path_factory.mktemp("azurite")
    port = _free_port()
    cmd = [
        str(AZURITE_TABLE),
        "--tableHost", "127.0.0.1", "--tablePort", str(port),
        "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry",
        "--oauth", "basic", "--cert", str(tls_files.cert), "--key", str(tls_files.key),
    ]  # fmt: skip
    log_path = workdir / "azurite.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        ctx = ssl.create_default_context(cafile=str(tls_files.ca_cert))
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"azurite-table exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
                    ctx.wrap_socket(raw, server_hostname="127.0.0.1"),
                ):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"azurite-table not listening:\n{log_path.read_text()}")
                time.sleep(0.1)
        yield Azurite(f"https://127.0.0.1:{port}/devstoreaccount1", tls_files.ca_cert)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
