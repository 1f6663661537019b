"""App settings precedence of the local stack, as with Core Tools: explicit
``localdev.stack`` options win, then the environment, then the stack's defaults.

Core Tools keeps an environment variable over local.settings.json when it is set and not
empty, and says "Skipping 'X' from local settings as it's already defined in current
environment variables." (Azure/azure-functions-core-tools,
src/Azure.Functions.Cli/Actions/HostActions/StartHostAction.cs, UpdateEnvironmentVariables).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from localdev.stack import Stack

from .helpers import http, stop_stack, wait_for
from .test_cli import REPO, free_ports


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_options_then_environment_then_defaults(tmp_path: Path) -> None:
    stack = Stack(tmp_path, purge_schedule="0 0 * * * *", extra_settings={"EVENT_ACTIONS": "x=revoke"})
    settings = stack.app_settings({
        "DELETION_GRACE_MINUTES": "7",       # environment over the default (1440)
        "PURGE_SCHEDULE": "0 0 0 1 1 *",     # the explicit option wins
        "EVENT_ACTIONS": "y=delete",         # extra_settings are explicit too
        "TOKEN_LIFETIME_MINUTES": "",        # empty: not defined (Core Tools' IsNullOrEmpty)
        "AUTH_ISSUER": "https://elsewhere.example",  # wired to the stack's issuer
    })
    assert settings["DELETION_GRACE_MINUTES"] == "7"
    assert settings["PURGE_SCHEDULE"] == "0 0 * * * *"
    assert settings["EVENT_ACTIONS"] == "x=revoke"
    assert "TOKEN_LIFETIME_MINUTES" not in settings
    assert settings["AUTH_ISSUER"] != "https://elsewhere.example"
    assert stack.env_settings == {"DELETION_GRACE_MINUTES": "7"}
    # Without the environment's value, the stack's default.
    assert Stack(tmp_path).app_settings({})["DELETION_GRACE_MINUTES"] == "1440"


def test_claim_settings_the_dev_tokens_rely_on_are_not_inherited(tmp_path: Path) -> None:
    """The stack's dev tokens carry the user in oid/sub, roles in ``roles`` and no required
    scope (the app's defaults), like AUTH_ADMIN_ROLE: a shell's AUTH_USER_CLAIM,
    AUTH_ROLES_CLAIM or AUTH_REQUIRED_SCOPES would make every dev token a 401/403."""
    stack = Stack(tmp_path)
    settings = stack.app_settings({
        "AUTH_USER_CLAIM": "upn",
        "AUTH_ROLES_CLAIM": "groups",
        "AUTH_REQUIRED_SCOPES": "Token.Issue",
        "AUTH_ADMIN_ROLE": "Someone.Else",
        "DELETION_GRACE_MINUTES": "7",  # an unwired setting still comes from the environment
    })
    for name in ("AUTH_USER_CLAIM", "AUTH_ROLES_CLAIM", "AUTH_REQUIRED_SCOPES"):
        assert name not in settings, name
    assert settings["AUTH_ADMIN_ROLE"] != "Someone.Else"
    assert stack.env_settings == {"DELETION_GRACE_MINUTES": "7"}


def test_environment_settings_reach_the_app_over_a_real_start(tmp_path: Path) -> None:
    """``DELETION_GRACE_MINUTES=0 make run``: the app purges at once, and the banner says so."""
    data_dir = tmp_path / "localdev"
    api, issuer, acs = free_ports(3)
    azurite = free_ports(3, consecutive=True)[0]
    args = [
        "--data-dir", str(data_dir), "--no-func", "--api-port", str(api),
        "--issuer-port", str(issuer), "--acs-port", str(acs),
        "--azurite-base-port", str(azurite), "--purge-schedule", "0 0 * * * *",
    ]  # fmt: skip
    env = {
        **os.environ,
        "DELETION_GRACE_MINUTES": "0",
        "TOKEN_LIFETIME_MINUTES": "60",
        "PURGE_SCHEDULE": "not a schedule",  # the host would refuse it: the option must win
        "AUTH_ISSUER": "https://elsewhere.example",  # ignored: the stack wires its issuer
    }
    out = tmp_path / "out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "localdev.stack", *args], cwd=REPO, env=env,
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def ready() -> dict[str, Any] | None:
        assert proc.poll() is None, out.read_text()
        try:
            info: dict[str, Any] = json.loads((data_dir / "stack.json").read_text())
        except (OSError, ValueError):
            return None
        return info if "devToken" in info and info.get("pid") == proc.pid else None

    try:
        info = wait_for(ready, timeout=90, what="stack.json")
        banner = out.read_text()
        assert "Settings from the environment" in banner
        assert "  DELETION_GRACE_MINUTES=0\n" in banner
        assert "  TOKEN_LIFETIME_MINUTES=60\n" in banner
        assert "PURGE_SCHEDULE=" not in banner and "elsewhere" not in banner
        assert info["settingsFromEnvironment"] == ["DELETION_GRACE_MINUTES",
                                                   "TOKEN_LIFETIME_MINUTES"]
        assert info["graceMinutes"] == 0

        api_base, token = info["apiBase"], info["devToken"]  # the stack's own issuer works
        before = datetime.now(timezone.utc)
        issued = http("POST", api_base + "/token", token=token)
        assert issued.status == 200, issued.body
        lifetime = _when(issued.json()["expiresOn"]) - before
        assert timedelta(minutes=55) < lifetime <= timedelta(minutes=61)  # not 1440
        deleted = http("DELETE", api_base + "/me", token=token)
        assert deleted.status == 202, deleted.body
        assert _when(deleted.json()["purgeAfter"]) <= datetime.now(timezone.utc)  # grace 0
        app_log = (data_dir / "logs" / "app.log").read_text()
        assert ("Skipping 'DELETION_GRACE_MINUTES' from local settings as it's already "
                "defined in current environment variables.") in app_log
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, out.read_text()
    finally:
        stop_stack(proc)
