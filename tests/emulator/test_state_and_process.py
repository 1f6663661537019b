"""Persistence across restarts, key reuse, and the process contract (acs.json, stdout, SIGTERM)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from azure.communication.identity import CommunicationIdentityClient, CommunicationUserIdentifier
from azure.core.exceptions import ResourceNotFoundError

from localdev.acs_emulator import EmulatorError, EmulatorProcess


def client(emu: EmulatorProcess) -> CommunicationIdentityClient:
    return CommunicationIdentityClient.from_connection_string(
        emu.connection_string, connection_verify=emu.ca_file, retry_total=0
    )


def test_state_file_survives_restart(
    emulator_factory: Callable[..., EmulatorProcess], tmp_path: Path
) -> None:
    state = tmp_path / "state" / "acs-state.json"
    emu = emulator_factory(state_file=state)
    c = client(emu)
    kept, kept_old = c.create_user_and_token(["chat"])
    c.revoke_tokens(kept)
    kept_new = c.get_token(kept, ["voip"])
    gone, gone_tok = c.create_user_and_token(["chat"])
    c.delete_user(gone)
    conn, port = emu.connection_string, emu.port

    emu.stop()
    saved = json.loads(state.read_text())
    assert kept.properties["id"] in saved["identities"]
    assert gone.properties["id"] in saved["deleted"]

    emu.start()
    assert emu.port == port
    assert emu.connection_string == conn  # same access key, same endpoint
    assert emu.identities() == [kept.properties["id"]]
    assert emu.validate(kept_new.token)["valid"] is True
    assert emu.validate(kept_old.token)["reason"] == "revoked"
    assert emu.validate(gone_tok.token)["reason"] == "deleted"
    c = client(emu)  # new connection pool after the restart
    with pytest.raises(ResourceNotFoundError):
        c.get_token(gone, ["chat"])
    assert emu.validate(c.get_token(kept, ["chat"]).token)["valid"] is True


def test_pending_revoke_and_version_1_state_files_survive_restart(
    emulator_factory: Callable[..., EmulatorProcess], tmp_path: Path
) -> None:
    """Revocation lives in the state file now that tokens carry no private claim: a delayed
    revoke is still pending after a restart; a state file written before (version 1,
    revocation generations) still loads."""
    state = tmp_path / "acs-state.json"
    emu = emulator_factory(state_file=state, revoke_delay=600)
    c = client(emu)
    user, old = c.create_user_and_token(["chat"])
    c.revoke_tokens(user)
    emu.stop()
    saved = json.loads(state.read_text())
    assert saved["version"] == 2
    cutoff, _, pending = saved["identities"][user.properties["id"]]
    assert cutoff == 0 and len(pending) == 1
    emu.start()
    assert emu.validate(old.token)["valid"] is True  # still pending: 600 s have not passed
    emu.stop()

    resource = emu.resource_id
    v1 = {
        "version": 1,
        "resourceId": resource,
        "identities": {f"8:acs:{resource}_a": 0, f"8:acs:{resource}_b": 3},
        "deleted": [f"8:acs:{resource}_c"],
    }
    state.write_text(json.dumps(v1))
    emu.start()
    assert sorted(emu.identities()) == [f"8:acs:{resource}_a", f"8:acs:{resource}_b"]
    for ident in emu.identities():
        assert emu.validate(client(emu).get_token(
            CommunicationUserIdentifier(ident), ["chat"]).token)["valid"] is True


def test_without_state_file_keys_persist_but_identities_do_not(
    emulator_factory: Callable[..., EmulatorProcess],
) -> None:
    emu = emulator_factory()
    user, tok = client(emu).create_user_and_token(["chat"])
    conn, resource = emu.connection_string, emu.resource_id
    emu.stop()
    emu.start()
    assert emu.connection_string == conn
    assert emu.resource_id == resource
    assert emu.identities() == []
    # same signing key: the signature still checks, the identity is unknown now
    assert emu.validate(tok.token) == {
        "valid": False,
        "reason": "unknown-identity",
        "identity": user.properties["id"],
    }


def test_explicit_access_key_and_resource_id(
    emulator_factory: Callable[..., EmulatorProcess],
) -> None:
    key = base64.b64encode(b"k" * 32).decode()
    rid = "2dee53b4-368b-45b4-ab52-8493fb117652"
    emu = emulator_factory(access_key=key, extra_args=("--resource-id", rid))
    assert emu.connection_string.endswith(f";accesskey={key}")
    assert emu.connection_string.startswith("endpoint=https://127.0.0.1:")
    user = client(emu).create_user()
    assert user.properties["id"].startswith(f"8:acs:{rid}_")


def test_acs_json_contract_stdout_and_sigterm(
    emulator_factory: Callable[..., EmulatorProcess],
) -> None:
    emu = emulator_factory()
    info = json.loads((emu.data_dir / "acs.json").read_text())
    assert {"endpoint", "connectionString", "caFile", "pid"} <= set(info)
    assert info["endpoint"] == f"https://127.0.0.1:{emu.port}/"
    assert info["connectionString"].startswith(f"endpoint={info['endpoint']};accesskey=")
    assert info["caFile"] == str(emu.data_dir / "ca.pem")
    assert info["pid"] == emu.pid
    out = (emu.data_dir / "acs-emulator.out").read_text()
    assert out.strip().splitlines()[0] == info["connectionString"]
    proc = emu._proc
    assert proc is not None
    emu.stop()
    assert proc.returncode == 0  # clean exit on SIGTERM
    assert not (emu.data_dir / "acs.json").exists()


def test_startup_failure_reports_stderr(tmp_path: Path) -> None:
    with pytest.raises(EmulatorError, match="access-key"):
        EmulatorProcess(tmp_path / "bad", access_key="***not base64***").start()


def test_cli_sigint(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "localdev.acs_emulator", "--data-dir", str(tmp_path)],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    assert line.startswith("endpoint=https://127.0.0.1:")
    assert json.loads((tmp_path / "acs.json").read_text())["connectionString"] == line
    proc.send_signal(2)
    assert proc.wait(15) == 0
    proc.stdout.close()
    assert proc.stderr is not None
    proc.stderr.close()


def test_state_written_on_change_survives_sigkill(
    emulator_factory: Callable[..., EmulatorProcess], tmp_path: Path
) -> None:
    import time

    state = tmp_path / "crash-state.json"
    emu = emulator_factory(state_file=state)
    user = client(emu).create_user()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # debounced write, no shutdown needed
        if state.exists() and user.properties["id"] in json.loads(state.read_text())["identities"]:
            break
        time.sleep(0.05)
    emu.kill()  # no clean shutdown
    emu.start()
    assert emu.identities() == [user.properties["id"]]
