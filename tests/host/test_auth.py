"""Auth levels and keys (x-functions-key header or ?code=)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from localdev.host import HostKeys, load_or_create_keys

Client = TestClient[Any, Any]


async def test_anonymous_needs_no_key(client: Client) -> None:
    assert (await client.get("/api/hello/a")).status == 200


async def test_function_level(client: Client, host_keys: HostKeys) -> None:
    path = "/api/secure/function"
    assert (await client.get(path)).status == 401
    assert await (await client.get(path)).read() == b""
    assert (await client.get(path, headers={"x-functions-key": "wrong"})).status == 401
    assert (await client.get(path, params={"code": "wrong"})).status == 401
    fkey = host_keys.function_keys["default"]
    ok = await client.get(path, headers={"x-functions-key": fkey})
    assert ok.status == 200
    assert await ok.text() == "function level ok"
    assert (await client.get(path, params={"code": fkey})).status == 200
    # the master key is also accepted at function level
    assert (await client.get(path, params={"code": host_keys.master_key})).status == 200


async def test_app_default_auth_level_is_function(client: Client, host_keys: HostKeys) -> None:
    assert (await client.get("/api/secure/default")).status == 401
    resp = await client.get("/api/secure/default", params={"code": host_keys.default_function_key})
    assert resp.status == 200


async def test_admin_level_needs_master_key(client: Client, host_keys: HostKeys) -> None:
    path = "/api/secure/admin"
    assert (await client.get(path)).status == 401
    fkey = host_keys.function_keys["default"]
    assert (await client.get(path, headers={"x-functions-key": fkey})).status == 401
    ok = await client.get(path, headers={"x-functions-key": host_keys.master_key})
    assert ok.status == 200
    assert await ok.text() == "admin level ok"
    assert (await client.get(path, params={"code": host_keys.master_key})).status == 200


async def test_header_takes_precedence_over_query(client: Client, host_keys: HostKeys) -> None:
    resp = await client.get(
        "/api/secure/function",
        headers={"x-functions-key": "wrong"},
        params={"code": host_keys.default_function_key},
    )
    assert resp.status == 401


async def test_unmatched_route_is_404_before_auth(client: Client) -> None:
    assert (await client.get("/api/secure/nothing-here")).status == 404


def test_per_function_keys() -> None:
    keys = HostKeys.from_json(
        {"masterKey": "m", "functionKeys": {"default": "h"}, "functions": {"Fn": {"k": "only-fn"}}}
    )
    assert keys.level_of("m", "x") == "admin"
    assert keys.level_of("h", "x") == "function"
    assert keys.level_of("only-fn", "fn") == "function"
    assert keys.level_of("only-fn", "other") is None
    assert keys.level_of(None, "fn") is None


def test_keys_file_created_once(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "keys.json"
    first = load_or_create_keys(path)
    assert path.stat().st_mode & 0o777 == 0o600
    data = json.loads(path.read_text())
    assert data["masterKey"] == first.master_key
    assert data["functionKeys"]["default"] == first.default_function_key
    assert first.master_key != first.default_function_key
    assert load_or_create_keys(path) == first
