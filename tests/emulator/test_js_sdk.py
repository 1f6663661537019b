"""The official JS SDK (@azure/communication-identity) against the emulator, via node."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from localdev.acs_emulator import EmulatorProcess

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parent / "js" / "smoke.mjs"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("expires_on_digits", [None, 7, 0])
def test_js_sdk_smoke(emu: EmulatorProcess, expires_on_digits: int | None) -> None:
    """Every operation and error path; expiresOn with 7 fractional digits (as the service
    writes it, Azure/azure-sdk-for-net .../SessionRecords/CommunicationIdentityClientLiveTests/
    CreateUserAndTokenWithChatScope.json), none, and the default must all parse to a Date."""
    if not (REPO / "node_modules" / "@azure" / "communication-identity").is_dir():
        pytest.fail("npm packages missing: run npm ci in the repo root")
    emu.configure(expires_on_digits=expires_on_digits)
    env = {
        **os.environ,
        "ACS_CONNECTION_STRING": emu.connection_string,
        "NODE_EXTRA_CA_CERTS": emu.ca_file,
    }
    proc = subprocess.run(
        ["node", str(SCRIPT)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ok"] is True
    assert emu.validate(out["tokenBeforeRevoke"])["reason"] == "deleted"
    after = emu.validate(out["tokenAfterRevoke"])
    assert after == {"valid": False, "reason": "deleted", "identity": out["userId"]}
    assert emu.validate(out["user2Token"]) == {
        "valid": True,
        "reason": "ok",
        "identity": out["user2Id"],
    }
    assert emu.identities() == [out["user2Id"]]
    stats = emu.stats()
    assert stats["requests"]["deleteIdentity"] == 2
    assert stats["requests"]["exchangeTeamsUserAccessToken"] == 1
