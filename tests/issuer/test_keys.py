"""IssuerKeys: persistence, JWKS, minting without a server."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from localdev.issuer import TEAMS_AUDIENCE, TEAMS_SCOPES, IssuerKeys


def _verify(keys: IssuerKeys, token: str, audience: str, issuer: str) -> dict[str, Any]:
    header = jwt.get_unverified_header(token)
    jwk = next(k for k in keys.jwks()["keys"] if k["kid"] == header["kid"])
    key = jwt.PyJWK(jwk)
    return jwt.decode(token, key, algorithms=[jwk["alg"]], audience=audience, issuer=issuer)


def test_keys_created_once_and_reused(tmp_path: Path) -> None:
    first = IssuerKeys.load_or_create(tmp_path / "d")
    second = IssuerKeys.load_or_create(tmp_path / "d")
    assert isinstance(first.rsa_private_key, rsa.RSAPrivateKey)
    assert first.rsa_private_key.key_size == 2048
    assert isinstance(first.ec_private_key, ec.EllipticCurvePrivateKey)
    assert first.ec_private_key.curve.name == "secp256r1"
    assert second.kid_rs256 == first.kid_rs256
    assert second.kid_es256 == first.kid_es256
    assert first.kid_rs256 != first.kid_es256
    assert second.tenant_id == first.tenant_id
    assert second.identity_header == first.identity_header
    assert second.jwks() == first.jwks()


def test_private_keys_are_0600_pem(tmp_path: Path) -> None:
    keys = IssuerKeys.load_or_create(tmp_path)
    pems = sorted((tmp_path / "keys").glob("*.pem"))
    assert {p.stem for p in pems} == {keys.kid_rs256, keys.kid_es256}
    for pem in pems:
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
        assert pem.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE((tmp_path / "state.json").stat().st_mode) == 0o600


def test_jwks_has_public_parts_only(tmp_path: Path) -> None:
    keys = IssuerKeys.load_or_create(tmp_path)
    by_kid = {k["kid"]: k for k in keys.jwks()["keys"]}
    assert set(by_kid) == {keys.kid_rs256, keys.kid_es256}
    rsa_jwk, ec_jwk = by_kid[keys.kid_rs256], by_kid[keys.kid_es256]
    assert (rsa_jwk["kty"], rsa_jwk["alg"], rsa_jwk["use"], rsa_jwk["e"]) == (
        "RSA", "RS256", "sig", "AQAB",
    )  # fmt: skip
    assert (ec_jwk["kty"], ec_jwk["alg"], ec_jwk["crv"]) == ("EC", "ES256", "P-256")
    for jwk in (rsa_jwk, ec_jwk):
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)
    # the kid is the RFC 7638 thumbprint, as PyJWT computes it
    assert jwt.PyJWK(rsa_jwk).key_id == keys.kid_rs256


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_mint_claims(tmp_path: Path, alg: str) -> None:
    keys = IssuerKeys.load_or_create(tmp_path)
    before = int(time.time())
    token = keys.mint(
        sub="alice",
        issuer="http://127.0.0.1:1234",
        audience="api://acs-token-service",
        roles=("TokenService.Admin", "Other"),
        minutes=15,
        alg=alg,
    )
    header = jwt.get_unverified_header(token)
    assert header["alg"] == alg
    assert header["kid"] == (keys.kid_rs256 if alg == "RS256" else keys.kid_es256)
    claims = _verify(keys, token, "api://acs-token-service", "http://127.0.0.1:1234")
    assert claims["sub"] == "alice"
    assert claims["oid"] == "alice"
    assert claims["tid"] == keys.tenant_id
    assert claims["roles"] == ["TokenService.Admin", "Other"]
    assert before <= claims["iat"] <= int(time.time())
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] - claims["iat"] == 15 * 60


def test_mint_options(tmp_path: Path) -> None:
    keys = IssuerKeys.load_or_create(tmp_path)
    token = keys.mint(
        sub="bob",
        issuer="http://i",
        audience="aud",
        oid="00000000-0000-0000-0000-000000000001",
        extra_claims={"name": "Bob", "tid": None},
        headers={"kid": "not-a-known-kid"},
    )
    assert jwt.get_unverified_header(token)["kid"] == "not-a-known-kid"
    claims = jwt.decode(token, keys.rsa_private_key.public_key(), algorithms=["RS256"],
                        audience="aud")  # fmt: skip
    assert claims["oid"] == "00000000-0000-0000-0000-000000000001"
    assert claims["name"] == "Bob"
    assert "tid" not in claims
    assert "roles" not in claims  # only when given

    expired = keys.mint(sub="bob", issuer="http://i", audience="aud", minutes=-5)
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(expired, keys.rsa_private_key.public_key(), algorithms=["RS256"], audience="aud")


def test_mint_defaults_come_from_issuer_json(tmp_path: Path) -> None:
    keys = IssuerKeys.load_or_create(tmp_path)
    with pytest.raises(ValueError, match=r"issuer\.json"):
        keys.mint(sub="alice")
    (tmp_path / "issuer.json").write_text(
        json.dumps({"issuer": "http://127.0.0.1:9", "audience": "api://x"})
    )
    claims = jwt.decode(keys.mint(sub="alice"), options={"verify_signature": False})
    assert (claims["iss"], claims["aud"]) == ("http://127.0.0.1:9", "api://x")


def test_rotate_keeps_old_key_in_jwks(tmp_path: Path) -> None:
    keys = IssuerKeys.load_or_create(tmp_path)
    old_kid = keys.kid_rs256
    old_token = keys.mint(sub="a", issuer="http://i", audience="aud")
    new_kid = keys.rotate("RS256")
    assert new_kid != old_kid
    assert keys.kid_rs256 == new_kid
    new_token = keys.mint(sub="a", issuer="http://i", audience="aud")
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    reloaded = IssuerKeys.load_or_create(tmp_path)
    assert reloaded.kid_rs256 == new_kid
    kids = [k["kid"] for k in reloaded.jwks()["keys"]]
    assert old_kid in kids
    assert new_kid in kids
    for token in (old_token, new_token):
        assert _verify(reloaded, token, "aud", "http://i")["sub"] == "a"


def test_mint_teams_claims(tmp_path: Path) -> None:
    keys = IssuerKeys.load_or_create(tmp_path)
    token = keys.mint_teams(oid="oid-1", appid="app-1", minutes=10)
    assert jwt.get_unverified_header(token)["kid"] == keys.kid_rs256
    claims = _verify(keys, token, TEAMS_AUDIENCE, f"https://sts.windows.net/{keys.tenant_id}/")
    assert claims["aud"] == "https://auth.msft.communication.azure.com"
    assert claims["oid"] == "oid-1"
    assert claims["appid"] == "app-1"
    assert claims["tid"] == keys.tenant_id
    assert claims["scp"] == TEAMS_SCOPES
    assert claims["scp"].split() == [
        "https://auth.msft.communication.azure.com/Teams.ManageCalls",
        "https://auth.msft.communication.azure.com/Teams.ManageChats",
    ]
    assert claims["exp"] - claims["iat"] == 600


def test_managed_identity_ids_are_stable(tmp_path: Path) -> None:
    keys = IssuerKeys.load_or_create(tmp_path)
    assert keys.managed_identity_ids() == (keys.mi_client_id, keys.mi_principal_id)
    assert keys.managed_identity_ids(client_id="c1") == keys.managed_identity_ids(client_id="c1")
    assert keys.managed_identity_ids(client_id="c1")[0] == "c1"
    assert keys.managed_identity_ids(object_id="o1")[1] == "o1"
    assert keys.managed_identity_ids(client_id="c1") != keys.managed_identity_ids(client_id="c2")
    response = keys.mint_managed_identity("https://storage.azure.com/.default")
    assert response["resource"] == "https://storage.azure.com"
    claims = jwt.decode(response["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://storage.azure.com"
    assert claims["exp"] == int(response["expires_on"])
