"""With ``func`` (Core Tools) on PATH the stack runs ``func start`` in the app directory with a
generated local.settings.json. Core Tools cannot be installed here, so a stand-in ``func``
checks what it is given (arguments, settings file, environment) and then serves the app
with localdev.host, as Core Tools would serve it.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from localdev.stack import Stack

from .helpers import http

REPO = Path(__file__).resolve().parents[2]

FAKE_FUNC = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    from pathlib import Path

    args = sys.argv[1:]
    assert args[:2] == ["start", "--port"], args
    settings = json.loads(Path("local.settings.json").read_text())
    record = {{
        "args": args,
        "cwd": os.getcwd(),
        "values": settings["Values"],
        "env": {{k: os.environ.get(k, "") for k in (
            "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "AUTH_ISSUER",
            "languageWorkers__python__defaultExecutablePath")}},
        "path0": os.environ["PATH"].split(os.pathsep)[0],
    }}
    Path({record!r}).write_text(json.dumps(record))
    os.environ["PYTHONPATH"] = {repo!r}
    os.execv(sys.executable, [sys.executable, "-m", "localdev.host", "--app-dir", ".",
                              "--port", args[2], "--no-timers"])
""")


@pytest.fixture
def fake_func(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "func-record.json"
    script = bin_dir / "func"
    script.write_text(FAKE_FUNC.format(python=sys.executable, record=str(record),
                                       repo=str(REPO)))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    return record


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A copy of the deployable app (what `func start` would run from)."""
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(REPO / "function_app.py", app)
    shutil.copy(REPO / "host.json", app)
    shutil.copytree(REPO / "shared", app / "shared",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return app


def test_func_start_when_core_tools_is_installed(fake_func: Path, app_dir: Path,
                                                 tmp_path: Path) -> None:
    with Stack(tmp_path / "data", use_func=None, app_dir=app_dir) as stack:
        assert stack.host == "func"
        assert stack.info()["host"] == "func"
        token = stack.mint("func-user")
        issued = http("POST", stack.api_base + "/token", token=token)
        assert issued.status == 200, issued.body

        record = json.loads(fake_func.read_text())
        assert record["args"] == ["start", "--port", str(stack.api_port)]
        assert Path(record["cwd"]) == app_dir
        values = record["values"]
        assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
        assert values["AzureWebJobsStorage"] == stack.storage_connection_string
        for name in ("COMMUNICATION_SERVICES_CONNECTION_STRING", "IDENTITY_TABLE_CONNECTION",
                     "AUTH_ISSUER", "AUTH_AUDIENCE", "DELETION_GRACE_MINUTES",
                     "PURGE_SCHEDULE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
            assert values[name] == stack.settings[name], name
        assert values["AUTH_ISSUER"] == stack.issuer
        # aiohttp reads SSL_CERT_FILE at import: it is in the process environment too.
        assert record["env"]["SSL_CERT_FILE"] == stack.ca_bundle
        assert stack.ca_file and Path(stack.ca_file).read_text() in Path(
            stack.ca_bundle).read_text()
        assert record["env"]["languageWorkers__python__defaultExecutablePath"] == sys.executable
        assert record["path0"] == str(Path(sys.executable).parent)
    assert (app_dir / "local.settings.json").exists()


def test_hand_written_local_settings_are_kept(fake_func: Path, app_dir: Path,
                                              tmp_path: Path) -> None:
    mine = app_dir / "local.settings.json"
    original = json.dumps({"IsEncrypted": False, "Values": {
        "FUNCTIONS_WORKER_RUNTIME": "python", "AUTH_ISSUER": "https://login.example/"}})
    mine.write_text(original)
    with Stack(tmp_path / "data", use_func=None, app_dir=app_dir) as stack:
        assert stack.host == "func"
        assert mine.read_text() == original
        # The environment (which Core Tools prefers to the file) carries the stack's values.
        record = json.loads(fake_func.read_text())
        assert record["env"]["AUTH_ISSUER"] == stack.issuer
        token = stack.mint("func-user-2")
        assert http("POST", stack.api_base + "/token", token=token).status == 200


def test_no_func_flag_uses_localdev_host(fake_func: Path, tmp_path: Path) -> None:
    with Stack(tmp_path / "data", use_func=False) as stack:
        assert stack.host == "localdev.host"
        assert not fake_func.exists()
