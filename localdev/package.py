"""What a deployment ships: the project's files that .funcignore keeps, copied as a package.

azd (1.18+, PR Azure/azure-dev#5383) zips a Functions service's folder minus what its
.funcignore excludes, read as standard gitignore syntax, ``!`` re-including ("Configure
service packaging file exclusions", learn.microsoft.com/azure/developer/azure-developer-cli);
with a .funcignore present azd applies no default exclusions of its own, so ``__pycache__``
ships only if .funcignore lets it. pathspec's GitIgnoreSpec is the same gitignore syntax. A
directory that .funcignore excludes is not descended into (as git and azd's copy do), so a
negation can only re-include files whose directories are kept.

Used by tests/deploy and ``python -m bench.coldstart`` to run the app exactly as shipped.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pathspec

ROOT = Path(__file__).resolve().parents[1]

#: Excluded by azd whatever .funcignore says: its own folder, and for function apps
#: local.settings.json (Azure/azure-dev#5383, as Core Tools does).
ALWAYS_EXCLUDED = (".azure/", "local.settings.json")


def funcignore(root: Path = ROOT) -> pathspec.GitIgnoreSpec:
    lines = (root / ".funcignore").read_text().splitlines()
    return pathspec.GitIgnoreSpec.from_lines([*ALWAYS_EXCLUDED, *lines])


def shipped_files(root: Path = ROOT) -> list[str]:
    """The project-relative paths (``/``-separated) of every file the package holds."""
    spec = funcignore(root)
    kept: list[str] = []
    for here, dirs, files in os.walk(root):
        rel = Path(here).relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        dirs[:] = sorted(d for d in dirs if not spec.match_file(prefix + d + "/"))
        kept += [prefix + f for f in sorted(files) if not spec.match_file(prefix + f)]
    return kept


def build(dest: Path, root: Path = ROOT) -> list[str]:
    """Copy the shipped files of ``root`` to ``dest`` (created); returns their paths."""
    files = shipped_files(root)
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    return files


def make_read_only(tree: Path) -> None:
    """chmod a-w on every file and directory of ``tree``, as a run-from-package mount is."""
    for here, dirs, files in os.walk(tree):
        for name in (*dirs, *files):
            path = Path(here) / name
            path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)
    tree.chmod(stat.S_IMODE(tree.stat().st_mode) & ~0o222)


def remove(tree: Path) -> None:
    """Delete a tree made read-only by :func:`make_read_only`."""
    if not tree.exists():
        return
    for here, dirs, _ in os.walk(tree):
        Path(here).chmod(0o755)
        for d in dirs:
            (Path(here) / d).chmod(0o755)
    shutil.rmtree(tree)
