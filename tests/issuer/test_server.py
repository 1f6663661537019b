"""The HTTP server: discovery, JWKS, stats, rotation, token endpoint, lifecycle."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from localdev.issuer import IssuerProcess, IssuerServer

REPO_ROOT = Path(__file__).resolve().parents[2]


def _verify_with_jwks_client(
    token: str, jwks_uri: str, issuer: str, audience: str
) -> dict[str, Any]:
    client = jwt.PyJWKClient(jwks_uri, cache_keys=False)
    signing_key = client.get_signing_key_from_jwt(token)
    return jwt.decode(
        token, signing_key.key, algorithms=["RS256", "ES256"], audience=audience, issuer=issuer
    )


def test_discovery_document(issuer: IssuerProcess, http: requests.Session) -> None:
    resp = http.get(issuer.issuer + "/.well-known/openid-configuration", timeout=10)
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["issuer"] == issuer.issuer
    assert doc["jwks_uri"] == issuer.jwks_uri
    assert doc["token_endpoint"] == issuer.issuer + "/token"
    assert set(doc["id_token_signing_alg_values_supported"]) == {"RS256", "ES256"}
    assert issuer.issuer.startswith("http://127.0.0.1:")
    assert issuer.port == int(issuer.issuer.rsplit(":", 1)[1])


def test_jwks_served_on_both_paths(issuer: IssuerProcess, http: requests.Session) -> None:
    a = http.get(issuer.jwks_uri, timeout=10)
    b = http.get(issuer.issuer + "/.well-known/jwks.json", timeout=10)
    assert a.status_code == b.status_code == 200
    assert a.json() == b.json() == issuer.keys.jwks()
    kids = {k["kid"] for k in a.json()["keys"]}
    assert kids == {issuer.keys.kid_rs256, issuer.keys.kid_es256}


def test_issuer_json_matches_handle(issuer: IssuerProcess) -> None:
    info = json.loads((issuer.data_dir / "issuer.json").read_text())
    assert info["issuer"] == issuer.issuer
    assert info["jwksUri"] == issuer.jwks_uri
    assert info["audience"] == "api://acs-token-service" == issuer.audience
    assert info["port"] == issuer.port
    assert issuer.proc is not None
    assert info["pid"] == issuer.proc.pid == issuer.pid
    assert info["identityEndpoint"] == f"{issuer.issuer}/msi/token"
    assert info["identityHeader"] == issuer.identity_header == issuer.keys.identity_header
    assert info["tenantId"] == issuer.tenant_id == issuer.keys.tenant_id


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_pyjwkclient_verifies_minted_tokens(issuer: IssuerProcess, alg: str) -> None:
    token = issuer.mint(sub="alice", roles=("TokenService.Admin",), minutes=30, alg=alg)
    claims = _verify_with_jwks_client(token, issuer.jwks_uri, issuer.issuer, issuer.audience)
    assert claims["sub"] == "alice"
    assert claims["roles"] == ["TokenService.Admin"]
    assert claims["exp"] - claims["iat"] == 30 * 60
    assert jwt.get_unverified_header(token)["alg"] == alg


def test_discovery_then_jwks_like_a_verifier(issuer: IssuerProcess, http: requests.Session) -> None:
    token = issuer.mint(sub="carol")
    doc = http.get(issuer.discovery_url, timeout=10).json()
    claims = _verify_with_jwks_client(token, doc["jwks_uri"], doc["issuer"], issuer.audience)
    assert claims["sub"] == "carol"


def test_wrong_audience_rejected_by_verifier(issuer: IssuerProcess) -> None:
    token = issuer.mint(sub="alice", audience="api://someone-else")
    with pytest.raises(jwt.InvalidAudienceError):
        _verify_with_jwks_client(token, issuer.jwks_uri, issuer.issuer, issuer.audience)


def test_stats_count_requests(local_issuer: IssuerServer, http: requests.Session) -> None:
    base = local_issuer.issuer
    assert local_issuer.stats() == {
        "discoveryRequests": 0, "jwksRequests": 0, "msiRequests": 0, "tokenRequests": 0,
    }  # fmt: skip
    for _ in range(3):
        http.get(base + "/.well-known/openid-configuration", timeout=10).raise_for_status()
    for _ in range(2):
        http.get(base + "/jwks", timeout=10).raise_for_status()
    http.get(base + "/.well-known/jwks.json", timeout=10).raise_for_status()
    headers = {"X-IDENTITY-HEADER": local_issuer.identity_header}
    params = {"api-version": "2019-08-01", "resource": "https://storage.azure.com"}
    http.get(local_issuer.identity_endpoint, params=params, headers=headers, timeout=10)
    http.get(local_issuer.identity_endpoint, params=params, timeout=10)  # rejected: still counted
    stats = local_issuer.stats()
    assert stats["discoveryRequests"] == 3
    assert stats["jwksRequests"] == 3
    assert stats["msiRequests"] == 2
    # PyJWKClient with caching fetches the JWKS once for many tokens of a known kid
    client = jwt.PyJWKClient(local_issuer.jwks_uri)
    for _ in range(5):
        client.get_signing_key_from_jwt(local_issuer.mint(sub="x"))
    assert local_issuer.stats()["jwksRequests"] == 4
    assert local_issuer.reset_stats()["jwksRequests"] == 0
    assert local_issuer.stats()["jwksRequests"] == 0


def test_rotate_in_process(local_issuer: IssuerServer) -> None:
    old_kid = local_issuer.keys.kid_rs256
    old_token = local_issuer.mint(sub="a")
    new_kid = local_issuer.rotate()
    assert new_kid != old_kid
    new_token = local_issuer.mint(sub="a")
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    kids = [k["kid"] for k in requests.get(local_issuer.jwks_uri, timeout=10).json()["keys"]]
    assert old_kid in kids
    assert new_kid in kids
    for token in (old_token, new_token):
        claims = _verify_with_jwks_client(
            token, local_issuer.jwks_uri, local_issuer.issuer, local_issuer.audience
        )
        assert claims["sub"] == "a"


def test_rotate_subprocess_and_restart_keeps_keys(tmp_path: Path) -> None:
    data_dir = tmp_path / "rot"
    with IssuerProcess(data_dir) as iss:
        first_kid = iss.keys.kid_rs256
        first_pid = iss.pid
        new_kid = iss.rotate("RS256")
        token = iss.mint(sub="a")
        assert jwt.get_unverified_header(token)["kid"] == new_kid
        assert _verify_with_jwks_client(token, iss.jwks_uri, iss.issuer, iss.audience)["sub"] == "a"
    with IssuerProcess(data_dir) as iss2:
        assert iss2.pid != first_pid
        kids = [k["kid"] for k in requests.get(iss2.jwks_uri, timeout=10).json()["keys"]]
        assert kids[:2] == [first_kid, new_kid]
        assert iss2.keys.kid_rs256 == new_kid


def test_keys_and_state_persist_across_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "persist"
    with IssuerProcess(data_dir, audience="api://custom") as iss:
        jwks1 = requests.get(iss.jwks_uri, timeout=10).json()
        header1, tenant1 = iss.identity_header, iss.tenant_id
        assert iss.audience == "api://custom"
    with IssuerProcess(data_dir) as iss:
        jwks2 = requests.get(iss.jwks_uri, timeout=10).json()
        assert jwks2 == jwks1
        assert (iss.identity_header, iss.tenant_id) == (header1, tenant1)
    for pem in (data_dir / "keys").glob("*.pem"):
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_url_and_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "localdev.issuer", "serve", "--data-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        info = json.loads((tmp_path / "issuer.json").read_text())
        assert line == info["issuer"]
        assert info["pid"] == proc.pid
        assert requests.get(line + "/jwks", timeout=10).status_code == 200
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err.decode()
        assert out == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_refuses_non_loopback_host(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="loopback"):
        IssuerProcess(tmp_path, host="0.0.0.0").start()


def test_token_endpoint_client_credentials(
    local_issuer: IssuerServer, http: requests.Session
) -> None:
    resp = http.post(
        local_issuer.issuer + "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "svc-1",
            "scope": "api://acs-token-service/.default",
            "roles": "TokenService.Admin",
        },
        timeout=10,
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["token_type"] == "Bearer"
    claims = _verify_with_jwks_client(
        body["access_token"], local_issuer.jwks_uri, local_issuer.issuer, "api://acs-token-service"
    )
    assert (claims["sub"], claims["azp"], claims["roles"]) == (
        "svc-1", "svc-1", ["TokenService.Admin"],
    )  # fmt: skip
    bad = http.post(local_issuer.issuer + "/token", data={"grant_type": "password"}, timeout=10)
    assert bad.status_code == 400
    assert local_issuer.stats()["tokenRequests"] == 2
