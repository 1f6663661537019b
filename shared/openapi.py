"""The OpenAPI 3.1 document of the HTTP API (shared/openapi.json), served as-is."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any


@cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (Path(__file__).with_name("openapi.json")).read_text(encoding="utf-8"))
    return loaded
