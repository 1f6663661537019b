"""Call function_app's functions the way the Functions host and worker do: through the
local host's invocation layer (one way for tests, localdev.chaos and the benchmark)."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from localdev.host.invocation import http_request, in_process

#: Indexed once, as the worker does.
APP = in_process()
INDEXED = APP.functions
FUNCTIONS = {name: f.func for name, f in INDEXED.items()}
request = http_request


async def call(name: str, req: func.HttpRequest) -> tuple[int, Any, dict[str, str]]:
    return await APP.call(name, req)


async def run(name: str, trigger_value: Any) -> Any:
    return await APP.run(name, trigger_value)


async def run_timer(name: str) -> None:
    await APP.run_timer(name)
