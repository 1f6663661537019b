"""Atomic file writes for the local tools: readers (tests, scripts, a second `make run`)
never see a half-written key, certificate, state or ready file."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes | str, *, private: bool = False) -> None:
    """Write via a unique temp file + fsync + rename; ``private`` means mode 0600."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    mode = 0o600 if private else 0o644
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, obj: Any, *, private: bool = False,
                      compact: bool = False) -> None:
    text = (json.dumps(obj, separators=(",", ":")) if compact
            else json.dumps(obj, indent=2) + "\n")
    write_atomic(path, text, private=private)
