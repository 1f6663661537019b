"""Ship the app's own bytecode: ``python -m localdev.bytecode [--python-version 3.12]``.

Why: a Flex Consumption app runs from a read-only package ("Function apps on the Flex
Consumption hosting plan run from a package by default", learn.microsoft.com/azure/
azure-functions/run-functions-from-deployment-package), so a worker can never cache the
bytecode of function_app.py and shared/: every cold start compiles them from source
(~18 ms of the first token in ``python -m bench.coldstart``). Dependencies are not
affected: pip compiles them when it installs them.

This writes ``__pycache__`` next to the app's sources in *checked-hash* mode (PEP 552,
``py_compile.PycInvalidationMode.CHECKED_HASH``): the pyc records the SipHash of its
source, and the import system uses it only while the source still hashes the same, whatever
the package did to file times. A pyc can therefore never run code other than its source's;
an edited source is compiled from source again (the pyc just stops helping). .funcignore
keeps exactly these two ``__pycache__`` directories; azure.yaml runs this as the ``api``
service's ``prepackage`` hook.

Bytecode is per interpreter version (``cpython-312`` in the file name): run it with the
Python the Function App runs (``runtimeVersion`` in infra/main.bicep); another version's
files are ignored on Azure (harmless, no gain), and this says so.

Standard library only: the hook may run outside the project's virtualenv.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import py_compile
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The app's own code, as .funcignore ships it: function_app.py and the shared/ package.
APP_MODULE = "function_app.py"
APP_PACKAGE = "shared"

_RUNTIME_VERSION = re.compile(r"""^\s*runtimeVersion:\s*'([0-9]+\.[0-9]+)'""", re.MULTILINE)


def runtime_version(root: Path = ROOT) -> str:
    """The Python version the Function App runs: ``runtimeVersion`` in infra/main.bicep."""
    found = _RUNTIME_VERSION.findall((root / "infra" / "main.bicep").read_text())
    if len(set(found)) != 1:
        raise ValueError(f"expected one runtimeVersion in infra/main.bicep, found {found}")
    return str(found[0])


def app_sources(root: Path) -> list[Path]:
    """Every source file of the app: function_app.py and shared/**/*.py."""
    return [root / APP_MODULE, *sorted((root / APP_PACKAGE).rglob("*.py"))]


def compile_app(root: Path = ROOT) -> list[Path]:
    """Replace the app's bytecode under ``root`` with this interpreter's, checked-hash.

    Every existing ``*.pyc`` of the app is removed first, so the package holds exactly one
    checked-hash pyc per source for this interpreter: no other version's files, no
    timestamp-based ones a local run left, none of a deleted module. Returns the written
    files."""
    for cache in (root / "__pycache__", *(root / APP_PACKAGE).rglob("__pycache__")):
        for stale in cache.glob("*.pyc"):
            stale.unlink()
    # optimize=0: the plain .pyc a worker (no -O) reads, even if this runs under -O.
    mode = py_compile.PycInvalidationMode.CHECKED_HASH
    ok = compileall.compile_file(root / APP_MODULE, quiet=1, force=True, optimize=0,
                                 invalidation_mode=mode)
    ok = compileall.compile_dir(root / APP_PACKAGE, quiet=1, force=True, optimize=0,
                                invalidation_mode=mode) and ok
    if not ok:
        raise RuntimeError("compileall failed (see the errors above)")
    return [Path(importlib.util.cache_from_source(str(src), optimization=""))
            for src in app_sources(root)]


def version_warning(runtime: str) -> str | None:
    """Why this interpreter's bytecode will not help on Azure, or None if it will."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if here == runtime:
        return None
    return (f"warning: this is Python {here}, but the Function App runs Python {runtime}: "
            f"Azure ignores the cpython-{here.replace('.', '')} bytecode just written (harmless: "
            f"the app works the same, compiled from source at each cold start, just without "
            f"the faster start). For the gain, run it with Python {runtime}: "
            f"`python{runtime} -m localdev.bytecode` (Windows: `py -{runtime} -m "
            f"localdev.bytecode`).")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m localdev.bytecode",
        description="Compile function_app.py and shared/ into __pycache__ (checked-hash, "
                    "PEP 552) for the deployment package.")
    p.add_argument("--python-version", metavar="X.Y",
                   help="the Function App's Python (default: runtimeVersion in "
                        "infra/main.bicep)")
    p.add_argument("--root", type=Path, default=ROOT,
                   help="the project to compile (default: this checkout)")
    args = p.parse_args(argv)
    root = args.root.resolve()
    runtime = args.python_version or runtime_version(root)
    written = compile_app(root)
    print(f"localdev.bytecode: {len(written)} checked-hash pyc files for Python "
          f"{sys.version_info.major}.{sys.version_info.minor} in {root}", flush=True)
    warning = version_warning(runtime)
    if warning:
        print(f"localdev.bytecode: {warning}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
