"""The deployment package ships the app's own bytecode, and a worker uses it.

The package is built the way ``azd deploy`` builds it: the ``api`` service's prepackage hook
(azure.yaml) runs ``python -m localdev.bytecode`` in the project, then azd zips what
.funcignore keeps, read as gitignore syntax with ``!`` re-including (azd "Configure service
packaging file exclusions", learn.microsoft.com/azure/developer/azure-developer-cli; azd
PR Azure/azure-dev#5383). Core Tools reads the same .funcignore with its own matcher
(src/Azure.Functions.Cli/Common/GitIgnoreParser.cs, a port of codemix/gitignore-parser):
a path is kept if any ``!`` pattern matches it, so the negations keep the same files there.

A Flex Consumption app runs from that package read-only ("Function apps on the Flex
Consumption hosting plan run from a package by default", learn.microsoft.com/azure/
azure-functions/run-functions-from-deployment-package), so a worker cannot write bytecode:
the imports run here from a read-only copy with PYTHONDONTWRITEBYTECODE=1. The pycs are
checked-hash (PEP 552): valid only while their source hashes the same, which the edit test
proves. Bytecode is per interpreter: these tests build and import it with the interpreter
running them, as the tool does (on Azure, the Function App's Python must build it).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localdev import bytecode, package

ROOT = Path(__file__).resolve().parents[2]

#: Imported in a fresh process from the package: the entry module, and every module of
#: shared/ (a superset of those a first token needs: runtime, auth, jws, service, store, acs).
IMPORT_SCRIPT = r"""
import importlib, importlib.machinery, json, pkgutil, sys
from pathlib import Path

package = Path.cwd().resolve()
compiled = []
_source_to_code = importlib.machinery.SourceFileLoader.source_to_code

def _recording(self, data, path, *args, **kwargs):
    # Called by SourceLoader.get_code only when no valid pyc exists for the source.
    where = Path(path).resolve()
    if where.is_relative_to(package):
        compiled.append(where.relative_to(package).as_posix())
    return _source_to_code(self, data, path, *args, **kwargs)

importlib.machinery.SourceFileLoader.source_to_code = _recording

import function_app
import shared
for info in pkgutil.iter_modules(shared.__path__, "shared."):
    importlib.import_module(info.name)
print(json.dumps({"compiled": compiled, "functionApp": function_app.__file__,
                  "functions": len(function_app.app.get_functions()),
                  "dontWriteBytecode": sys.dont_write_bytecode}))
"""

_NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "node_modules", ".mypy_cache",
                                     ".pytest_cache", ".ruff_cache", "__pycache__",
                                     ".localdev", ".azure")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of this project, with the bytecode a local run of another interpreter or an
    old module would leave, after the prepackage hook ran in it."""
    project = tmp_path_factory.mktemp("deploy") / "project"
    shutil.copytree(ROOT, project, ignore=_NOT_COPIED)
    for where in ("shared", "localdev", "bench", "tests"):
        (project / where / "__pycache__").mkdir(parents=True, exist_ok=True)
        (project / where / "__pycache__" / "gone.cpython-39.pyc").write_bytes(b"stale")
    hook = _run([sys.executable, "-m", "localdev.bytecode"], cwd=project)
    assert hook.returncode == 0, hook.stderr
    return project


@pytest.fixture(scope="module")
def built(project: Path) -> Iterator[tuple[Path, list[str]]]:
    """The package azd builds from the project: what .funcignore keeps."""
    dest = project.parent / "package"
    shipped = package.build(dest, project)
    yield dest, shipped
    package.remove(dest)


def _import_from(tree: Path) -> dict[str, object]:
    proc = _run([sys.executable, "-c", IMPORT_SCRIPT], cwd=tree)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(str(result["functionApp"])).resolve() == (tree / "function_app.py").resolve()
    assert result["dontWriteBytecode"] is True
    return result


@contextlib.contextmanager
def _read_only_copy(pkg: Path, dest: Path, *, with_bytecode: bool = True,
                    edit: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """A copy of the package at ``dest`` (without its bytecode if asked, edited if asked),
    read-only as Flex Consumption mounts it, removed afterwards."""
    ignore = None if with_bytecode else shutil.ignore_patterns("__pycache__")
    shutil.copytree(pkg, dest, ignore=ignore)
    if edit is not None:
        edit(dest)
    package.make_read_only(dest)
    try:
        yield dest
    finally:
        package.remove(dest)


def test_every_app_module_ships_a_checked_hash_pyc_for_this_interpreter(
        built: tuple[Path, list[str]]) -> None:
    pkg, shipped = built
    sources = bytecode.app_sources(pkg)
    assert len(sources) > 10
    expected = {Path(importlib.util.cache_from_source(str(src))).relative_to(pkg).as_posix()
                for src in sources}
    # Exactly one pyc per source, this interpreter's: no stale one of a gone module.
    assert {f for f in shipped if f.endswith(".pyc")} == expected
    for src in sources:
        pyc = Path(importlib.util.cache_from_source(str(src))).read_bytes()
        assert pyc[:4] == importlib.util.MAGIC_NUMBER, src
        # PEP 552 header: flags 0b11 = hash-based, check_source; then the source's hash.
        assert int.from_bytes(pyc[4:8], "little") == 0b11, src
        assert pyc[8:16] == importlib.util.source_hash(src.read_bytes()), src


def test_no_local_tool_test_or_bench_file_ships(built: tuple[Path, list[str]]) -> None:
    _, shipped = built
    assert not [f for f in shipped
                if f.split("/")[0] in {"tests", "localdev", "bench", "docs", "infra",
                                       "examples", "node_modules", ".venv"}]
    # Only the app ships (.funcignore's first line): its files, shared/, their bytecode.
    top = {"function_app.py", "host.json", "requirements.txt", ".funcignore"}
    assert [f for f in shipped if f not in top and f.split("/")[0] not in
            {"shared", "__pycache__"}] == []
    assert [f for f in shipped if f.endswith(".pyc") and f.rsplit("/", 1)[0] not in
            {"__pycache__", "shared/__pycache__"}] == []
    assert top - {".funcignore"} <= set(shipped)


def test_the_shipped_app_imports_without_compiling_any_of_its_source(
        built: tuple[Path, list[str]], tmp_path: Path) -> None:
    pkg, _ = built
    source = tmp_path / "source"
    shutil.copytree(pkg, source, ignore=shutil.ignore_patterns("__pycache__"))
    with _read_only_copy(pkg, tmp_path / "wwwroot") as tree:
        result = _import_from(tree)
        assert result["compiled"] == []
        # The same app as from its source: every function indexed.
        assert result["functions"] == _import_from(source)["functions"]


def test_an_edited_source_alone_is_compiled_again(built: tuple[Path, list[str]],
                                                   tmp_path: Path) -> None:
    pkg, _ = built

    def edit(tree: Path) -> None:
        keys = tree / "shared" / "keys.py"
        keys.write_text(keys.read_text() + "\n# edited after the bytecode was built\n")

    with _read_only_copy(pkg, tmp_path / "wwwroot", edit=edit) as tree:
        assert _import_from(tree)["compiled"] == ["shared/keys.py"]


def test_without_the_bytecode_every_module_is_compiled(built: tuple[Path, list[str]],
                                                        tmp_path: Path) -> None:
    """The control: the recorder sees compiles (so an empty list above means none)."""
    pkg, _ = built
    with _read_only_copy(pkg, tmp_path / "wwwroot", with_bytecode=False) as tree:
        compiled = _import_from(tree)["compiled"]
        assert isinstance(compiled, list)
        assert sorted(compiled) == sorted(
            src.relative_to(tree).as_posix() for src in bytecode.app_sources(tree))


def test_the_tool_warns_when_this_python_is_not_the_function_apps(tmp_path: Path) -> None:
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    other = f"{sys.version_info.major}.{sys.version_info.minor + 1}"
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=_NOT_COPIED)
    same = _run([sys.executable, "-m", "localdev.bytecode", "--python-version", here],
                cwd=project)
    assert same.returncode == 0, same.stderr
    assert "warning" not in same.stderr
    differ = _run([sys.executable, "-m", "localdev.bytecode", "--python-version", other],
                  cwd=project)
    assert differ.returncode == 0, differ.stderr  # harmless: the deploy goes on
    assert "warning" in differ.stderr
    assert f"runs Python {other}" in differ.stderr
    assert f"python{other} -m localdev.bytecode" in differ.stderr
    # Without the flag, the version is infra/main.bicep's runtimeVersion.
    default = _run([sys.executable, "-m", "localdev.bytecode"], cwd=project)
    assert default.returncode == 0, default.stderr
    assert ("warning" in default.stderr) == (bytecode.runtime_version(project) != here)


def test_azure_yaml_builds_the_bytecode_before_azd_packages() -> None:
    yaml = pytest.importorskip("yaml")
    spec = yaml.safe_load((ROOT / "azure.yaml").read_text())
    # Service-level hook (azd schema v1.0: services.<name>.hooks.prepackage, each of
    # windows/posix a hook with shell sh|pwsh and an inline run).
    hook = spec["services"]["api"]["hooks"]["prepackage"]
    assert hook["posix"]["shell"] == "sh"
    assert hook["windows"]["shell"] == "pwsh"
    for variant in (hook["posix"], hook["windows"]):
        assert variant["run"].endswith(" -m localdev.bytecode")


def _core_tools_accepts(funcignore: str) -> Callable[[str], bool]:
    """Core Tools' reading of .funcignore, ported line for line from
    src/Azure.Functions.Cli/Common/GitIgnoreParser.cs (Azure/azure-functions-core-tools):
    patterns are prefix-anchored regexes, and a path is kept if any ``!`` pattern matches it
    or no other pattern does (order does not matter)."""
    lists: tuple[list[str], list[str]] = ([], [])
    for line in (raw.strip() for raw in funcignore.split("\n")):
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line[1:] if negated else line
        line = line[1:] if line.startswith("/") else line
        lists[1 if negated else 0].append(line)

    def prepare(pattern: str) -> str:
        escaped = re.sub(r"[\-\[\]\/\{\}\(\)\+\?\.\\\^\$\|]", lambda m: "\\" + m.group(0),
                         pattern)
        return escaped.replace("**", "(.+)").replace("*", "([^\\/]+)")

    positive, negative = (
        re.compile("^((" + ")|(".join(prepare(p) for p in sorted(patterns)) + "))")
        if patterns else re.compile("$^") for patterns in lists)
    return lambda path: bool(negative.match(path)) or not positive.match(path)


def test_core_tools_reads_the_funcignore_to_the_same_package(
        project: Path, built: tuple[Path, list[str]]) -> None:
    """``func azure functionapp publish`` ships the same files (FileSystemHelpers.
    GetLocalFiles: every file but .git/ and .vscode/ and a few named files, each kept if
    the parser accepts its project-relative path)."""
    _, shipped = built
    accepts = _core_tools_accepts((project / ".funcignore").read_text())
    skipped_files = {".funcignore", ".gitignore", "local.settings.json", "project.lock.json",
                     "appsettings.json"}
    core_tools = set()
    for here, dirs, files in os.walk(project):
        dirs[:] = [d for d in dirs if d not in {".git", ".vscode"}]
        for name in files:
            rel = (Path(here) / name).relative_to(project).as_posix()
            if name not in skipped_files and accepts(rel):
                core_tools.add(rel)
    assert core_tools == set(shipped) - {".funcignore"}
