"""The mint / mint-teams CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jwt

from localdev.issuer import TEAMS_AUDIENCE, TEAMS_SCOPES, IssuerKeys, IssuerProcess

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localdev.issuer", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _single_jwt(stdout: str) -> str:
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    token = lines[0]
    assert token.count(".") == 2
    return token


def test_mint_cli_prints_verifiable_jwt(issuer: IssuerProcess) -> None:
    result = _cli(
        "mint", "--data-dir", str(issuer.data_dir), "--sub", "bob",
        "--role", "TokenService.Admin", "--role", "TokenService.Reader", "--minutes", "5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    token = _single_jwt(result.stdout)
    key = jwt.PyJWKClient(issuer.jwks_uri, cache_keys=False).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token, key.key, algorithms=["RS256"], audience=issuer.audience, issuer=issuer.issuer
    )
    assert claims["sub"] == "bob"
    assert claims["oid"] == "bob"
    assert claims["roles"] == ["TokenService.Admin", "TokenService.Reader"]
    assert claims["exp"] - claims["iat"] == 5 * 60
    assert claims["tid"] == issuer.tenant_id
    assert jwt.get_unverified_header(token)["kid"] == issuer.keys.kid_rs256


def test_mint_cli_es256_overrides(issuer: IssuerProcess) -> None:
    result = _cli(
        "mint", "--data-dir", str(issuer.data_dir), "--sub", "svc", "--oid", "oid-9",
        "--alg", "ES256", "--aud", "api://other", "--issuer", "http://127.0.0.1:1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    token = _single_jwt(result.stdout)
    assert jwt.get_unverified_header(token)["kid"] == issuer.keys.kid_es256
    key = jwt.PyJWKClient(issuer.jwks_uri, cache_keys=False).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token, key.key, algorithms=["ES256"], audience="api://other", issuer="http://127.0.0.1:1"
    )
    assert (claims["sub"], claims["oid"]) == ("svc", "oid-9")
    assert "roles" not in claims


def test_mint_cli_works_without_server(tmp_path: Path) -> None:
    result = _cli("mint", "--data-dir", str(tmp_path), "--sub", "alice",
                  "--issuer", "http://127.0.0.1:7", "--aud", "api://acs-token-service")  # fmt: skip
    assert result.returncode == 0, result.stderr
    token = _single_jwt(result.stdout)
    keys = IssuerKeys.load_or_create(tmp_path)  # the CLI created the keys; same ones now
    claims = jwt.decode(
        token,
        keys.rsa_private_key.public_key(),
        algorithms=["RS256"],
        audience="api://acs-token-service",
        issuer="http://127.0.0.1:7",
    )
    assert claims["sub"] == "alice"


def test_mint_cli_without_issuer_fails_cleanly(tmp_path: Path) -> None:
    result = _cli("mint", "--data-dir", str(tmp_path), "--sub", "alice")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "issuer.json" in result.stderr


def test_mint_teams_cli(issuer: IssuerProcess) -> None:
    result = _cli(
        "mint-teams", "--data-dir", str(issuer.data_dir),
        "--oid", "11111111-2222-3333-4444-555555555555", "--appid", "app-123", "--minutes", "20",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    token = _single_jwt(result.stdout)
    key = jwt.PyJWKClient(issuer.jwks_uri, cache_keys=False).get_signing_key_from_jwt(token)
    assert key.key_id == issuer.keys.kid_rs256
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience=TEAMS_AUDIENCE,
        issuer=f"https://sts.windows.net/{issuer.tenant_id}/",
    )
    assert claims["oid"] == "11111111-2222-3333-4444-555555555555"
    assert claims["appid"] == "app-123"
    assert claims["tid"] == issuer.tenant_id
    assert claims["scp"] == TEAMS_SCOPES
    assert claims["exp"] - claims["iat"] == 20 * 60
    # the Python API gives the same shape
    api_claims = jwt.decode(issuer.mint_teams(oid="o", appid="a"), key.key, algorithms=["RS256"],
                            audience=TEAMS_AUDIENCE)  # fmt: skip
    assert (api_claims["oid"], api_claims["appid"], api_claims["scp"]) == ("o", "a", TEAMS_SCOPES)
