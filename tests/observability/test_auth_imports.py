"""The first authenticated request of a fresh worker loads neither PyJWT nor
``cryptography.x509`` (~30 ms and ~15 ms of import on a cold start; shared/jws.py says
why), and the EC modules only once an ES256 token arrives.

A real worker's path: a fresh interpreter imports function_app (indexing), then
shared.runtime authenticates tokens minted by the session's local issuer, whose JWKS
(fetched over loopback) lists both an RS256 and an ES256 key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EC_MODULE = "cryptography.hazmat.primitives.asymmetric.ec"

PROBE = """
import asyncio, json, os, sys
import azure.functions
import function_app
from shared import runtime

async def who(token):
    caller = await runtime.authenticate({"authorization": "Bearer " + token})
    return caller.user_id, sorted(sys.modules)

async def main():
    rs256 = await who(os.environ["PROBE_RS256"])
    es256 = await who(os.environ["PROBE_ES256"])
    await runtime.reset()
    return rs256, es256

(rs_user, after_rs), (es_user, after_es) = asyncio.run(main())
print(json.dumps({"users": [rs_user, es_user], "afterRs256": after_rs,
                  "afterEs256": after_es}))
"""


@pytest.mark.usefixtures("app_env")
def test_authenticating_loads_no_pyjwt_and_no_x509(issuer, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "PROBE_RS256": issuer.mint("alice", alg="RS256"),
           "PROBE_ES256": issuer.mint("bob", alg="ES256")}
    env.pop("PYTHONSTARTUP", None)
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["users"] == ["alice", "bob"]
    for modules in (report["afterRs256"], report["afterEs256"]):
        assert "jwt" not in modules
        assert not [m for m in modules if m == "cryptography.x509"
                    or m.startswith("cryptography.x509.")]
    assert EC_MODULE not in report["afterRs256"]  # the JWKS's EC key alone loads no EC code
    assert EC_MODULE in report["afterEs256"]


def test_the_probe_sees_pyjwt_when_it_is_imported(tmp_path):
    """Not vacuous: in the same kind of process, importing PyJWT shows both modules."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", "import json, sys, jwt; print(json.dumps(sorted(sys.modules)))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout)
    assert "jwt" in modules and "cryptography.x509" in modules
