"""local.settings.json "Values" against the environment, as Core Tools applies them:
a variable that is set and not empty wins and is reported; an empty one is replaced
(StartHostAction.UpdateEnvironmentVariables in Azure/azure-functions-core-tools uses
string.IsNullOrEmpty)."""

from __future__ import annotations

import json
from pathlib import Path

from localdev.host.loader import load_local_settings


def test_environment_wins_and_empty_variables_do_not_count(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {
        "KEPT": "file", "EMPTY": "file", "NEW": "file", "FLAG": True}}))
    env = {"KEPT": "env", "EMPTY": ""}
    messages: list[str] = []
    load_local_settings(path, env, skipped=messages.append)
    assert env == {"KEPT": "env", "EMPTY": "file", "NEW": "file", "FLAG": "true"}
    assert messages == ["Skipping 'KEPT' from local settings as it's already defined in "
                        "current environment variables."]
