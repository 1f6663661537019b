"""Token format and revocation semantics, control endpoints, and the TLS helper."""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path

import jwt
import pytest
from azure.communication.identity import CommunicationIdentityClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from localdev import tls
from localdev.acs_emulator import EmulatorError, EmulatorProcess
from localdev.acs_emulator.tokens import TokenSigner, load_or_create_signing

from .helpers import API, create_identity, decode_segment, quote_id, signed


def client(emu: EmulatorProcess) -> CommunicationIdentityClient:
    return CommunicationIdentityClient.from_connection_string(
        emu.connection_string, connection_verify=emu.ca_file
    )


def issue(emu: EmulatorProcess, ident: str) -> str:
    r = signed(
        emu,
        "POST",
        f"/identities/{quote_id(ident)}/:issueAccessToken?api-version={API}",
        {"scopes": ["chat"]},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def test_token_shape_matches_real_rs256_tokens(emu: EmulatorProcess) -> None:
    """Real ACS tokens: RS256 with kid and x5t; payload exactly skypeid, scp, csi, exp, acsScope,
    resourceId, iat (a sanitised real token decoded in Azure/azure-cli-extensions
    src/communication/azext_communication/tests/latest/test_communication_chat_scenario.py);
    about 800 characters. No private claim: revocation lives in the emulator."""
    user, tok = client(emu).create_user_and_token(["chat", "voip"])
    header = decode_segment(tok.token.split(".")[0])
    assert header == {"alg": "RS256", "kid": header["kid"], "x5t": header["x5t"], "typ": "JWT"}
    jwks = emu.jwks()
    (key,) = jwks["keys"]
    assert key["kty"] == "RSA"
    assert header["kid"] == key["kid"]
    assert header["x5t"] == key["x5t"]
    claims = jwt.decode(
        tok.token, jwt.PyJWK(key).key, algorithms=["RS256"], options={"verify_aud": False}
    )
    assert list(claims) == ["skypeid", "scp", "csi", "exp", "acsScope", "resourceId", "iat"]
    assert claims["skypeid"] == user.properties["id"][2:]
    assert claims["scp"] == 1792
    assert claims["csi"] == str(claims["iat"])
    assert claims["acsScope"] == "chat,voip"
    assert claims["resourceId"] == emu.resource_id
    assert 760 <= len(tok.token) <= 840, len(tok.token)


def test_revocation_exact_within_the_same_second(emu: EmulatorProcess) -> None:
    ident = create_identity(emu)
    for _ in range(5):
        before = issue(emu, ident)
        r = signed(
            emu, "POST", f"/identities/{quote_id(ident)}/:revokeAccessTokens?api-version={API}"
        )
        assert r.status_code == 204
        after = issue(emu, ident)
        assert emu.validate(before)["reason"] == "revoked"
        assert emu.validate(after) == {"valid": True, "reason": "ok", "identity": ident}


def test_validate_reasons(emu: EmulatorProcess) -> None:
    ident = create_identity(emu)
    tok = issue(emu, ident)
    h, p, s = tok.split(".")
    assert emu.validate("garbage")["reason"] == "malformed"
    tampered_sig = s[:-4] + ("AAAA" if s[-4:] != "AAAA" else "BBBB")
    assert emu.validate(f"{h}.{p}.{tampered_sig}")["reason"] == "bad-signature"
    other_claims = decode_segment(p) | {"acsScope": "chat,voip"}
    forged = jwt.encode(other_claims, "x" * 32, algorithm="HS256")
    assert emu.validate(forged)["valid"] is False

    # A correctly signed but expired token (signed with the emulator's own key).
    signer = TokenSigner(load_or_create_signing(emu.data_dir))
    expired = signer.sign(decode_segment(p) | {"exp": int(time.time()) - 1})
    assert emu.validate(expired) == {"valid": False, "reason": "expired", "identity": ident}
    assert emu.validate(tok)["valid"] is True


def test_stats_and_identities(emu: EmulatorProcess) -> None:
    c = client(emu)
    a = c.create_user()
    b, _ = c.create_user_and_token(["chat"])
    c.get_token(a, ["voip"])
    c.revoke_tokens(a)
    c.delete_user(b)
    r = signed(
        emu,
        "POST",
        f"/identities/{quote_id(b.properties['id'])}/:issueAccessToken?api-version={API}",
        {"scopes": ["chat"]},
    )
    assert r.status_code == 404
    stats = emu.stats()
    assert stats["requests"] == {
        "createIdentity": 2,
        "issueAccessToken": 2,
        "revokeAccessTokens": 1,
        "deleteIdentity": 1,
        "exchangeTeamsUserAccessToken": 0,
    }
    assert stats["identities"] == 1
    assert stats["identitiesCreated"] == 2
    assert stats["connections"] >= 1
    assert isinstance(stats["connections"], int)
    assert emu.identities() == [a.properties["id"]]


def test_reset_clears_everything_but_keys(emu: EmulatorProcess) -> None:
    conn = emu.connection_string
    ident = create_identity(emu)
    tok = issue(emu, ident)
    emu.set_faults(latency_ms=10, fault={"operation": "*", "status": 500, "count": 3})
    emu.reset()
    stats = emu.stats()
    assert stats["identities"] == 0
    assert all(v == 0 for v in stats["requests"].values())
    assert stats["pendingFaults"] == []
    assert stats["latencyMs"] == 0
    assert emu.identities() == []
    assert emu.validate(tok)["reason"] == "unknown-identity"
    assert emu.connection_string == conn
    assert signed(emu, "POST", f"/identities?api-version={API}").status_code == 201


def test_control_errors(emu: EmulatorProcess) -> None:
    with pytest.raises(EmulatorError, match="404"):
        emu.control("GET", "nothing")
    with pytest.raises(EmulatorError, match="400"):
        emu.control("POST", "validate", {"token": 5})


def test_tls_helper(tmp_path: Path) -> None:
    ca = tls.ensure_ca(tmp_path)
    assert ca.cert_path == tmp_path / "ca.pem"
    assert tls.ensure_ca(tmp_path).cert == ca.cert  # reused
    cert_path, key_path = tls.ensure_server_cert(tmp_path, ca, name="svc")
    assert (cert_path, key_path) == (tmp_path / "svc.pem", tmp_path / "svc-key.pem")
    leaf = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert tls.ensure_server_cert(tmp_path, ca, name="svc") == (cert_path, key_path)
    assert x509.load_pem_x509_certificate(cert_path.read_bytes()) == leaf  # not re-issued
    # a new host list re-issues
    tls.ensure_server_cert(tmp_path, ca, name="svc", hosts=("localhost", "127.0.0.1", "acs.local"))
    leaf2 = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert leaf2 != leaf
    assert "acs.local" in leaf2.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert key.public_key().public_numbers() == leaf2.public_key().public_numbers()  # type: ignore[union-attr]


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_emulator_cert_verifies_for_both_names(emu: EmulatorProcess, hostname: str) -> None:
    ctx = ssl.create_default_context(cafile=emu.ca_file)
    with (
        socket.create_connection(("127.0.0.1", emu.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=hostname) as s,
    ):
        s.sendall(b"GET /_emulator/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["identities"] == 0
