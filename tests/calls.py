"""Call function_app's functions the way the Functions worker does."""

from __future__ import annotations

import json
import uuid
from typing import Any

import azure.functions as func

import function_app

#: Indexed once, as the worker does (a second get_functions() call is an error).
INDEXED = {f.get_function_name(): f for f in function_app.app.get_functions()}
FUNCTIONS = {name: f.get_user_function() for name, f in INDEXED.items()}


def request(method: str, path: str, *, token: str | None = None, body: Any = None,
            raw: bytes | None = None, route_params: dict[str, str] | None = None,
            headers: dict[str, str] | None = None) -> func.HttpRequest:
    all_headers = {"content-type": "application/json", **(headers or {})}
    if token is not None:
        all_headers["authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    return func.HttpRequest(method, f"http://localhost/api/{path}", headers=all_headers,
                            params={}, route_params=route_params or {}, body=data)


class Context:
    """What the worker passes as ``context`` (the parts the app reads)."""

    def __init__(self, name: str) -> None:
        self.invocation_id = str(uuid.uuid4())
        self.function_name = name
        self.function_directory = "."


async def call(name: str, req: func.HttpRequest) -> tuple[int, Any, dict[str, str]]:
    response = await FUNCTIONS[name](req, context=Context(name))
    body = response.get_body()
    payload = json.loads(body) if body else None
    return response.status_code, payload, dict(response.headers)
