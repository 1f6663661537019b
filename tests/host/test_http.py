"""HTTP triggers in-process: routes, params, methods, responses, errors, concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from localdev.host import create_host_app

from .conftest import SAMPLE_DIR, SAMPLE_ENV

Client = TestClient[Any, Any]


async def test_async_route_with_param(client: Client) -> None:
    resp = await client.get("/api/hello/W%C3%B6rld")
    assert resp.status == 200
    assert await resp.text() == "Hello, Wörld"
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"


async def test_route_prefix_and_literals_are_case_insensitive(client: Client) -> None:
    resp = await client.get("/API/Hello/x")
    assert resp.status == 200
    assert await resp.text() == "Hello, x"


async def test_typed_routes_and_precedence(client: Client) -> None:
    by_id = await (await client.get("/api/items/42")).json()
    assert by_id == {"kind": "id", "id": "42"}
    by_slug = await (await client.get("/api/items/forty-two")).json()
    assert by_slug == {"kind": "slug", "slug": "forty-two"}
    literal = await (await client.get("/api/items/new")).json()
    assert literal == {"kind": "literal"}


async def test_typed_segment_mismatch_is_404(client: Client) -> None:
    guid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    ok = await client.get(f"/api/things/{guid}/flag/true")
    assert ok.status == 200
    assert await ok.json() == {"id": guid, "on": "true"}
    for bad in ("/api/things/not-a-guid/flag/true", f"/api/things/{guid}/flag/maybe"):
        resp = await client.get(bad)
        assert resp.status == 404
        assert await resp.read() == b""
    assert (await client.get("/api/letters/abc1")).status == 404
    assert (await (await client.get("/api/letters/abc")).json()) == {"word": "abc"}


async def test_catch_all_and_optional(client: Client) -> None:
    assert await (await client.get("/api/files/a/b%20c/d.txt")).json() == {"path": "a/b c/d.txt"}
    assert await (await client.get("/api/opt")).json() == {"name": None}
    assert await (await client.get("/api/opt/zed")).json() == {"name": "zed"}


async def test_unknown_route_is_404_with_empty_body(client: Client) -> None:
    for path in ("/api/nope", "/nope", "/api/hello", "/api/hello/a/b"):
        resp = await client.get(path)
        assert resp.status == 404, path
        assert await resp.read() == b""


async def test_wrong_method_is_404_like_the_host(client: Client) -> None:
    # The Functions host answers 404 (not 405) when only the method differs
    # (azure-functions-host#10098).
    resp = await client.delete("/api/hello/x")
    assert resp.status == 404
    resp = await client.get("/api/echo")
    assert resp.status == 404


async def test_same_route_different_methods_go_to_different_functions(client: Client) -> None:
    resp = await client.post("/api/items", json={"a": 1})
    assert resp.status == 201
    assert await resp.json() == {"created": {"a": 1}}
    # GET /api/items matches no function (items/{x} needs a segment)
    assert (await client.get("/api/items")).status == 404


async def test_request_conversion(client: Client) -> None:
    resp = await client.put(
        "/api/echo?a=1&b=two&a=3",
        data=b'{"hello": "world"}',
        headers={"X-Test": "hdr", "Content-Type": "application/json"},
    )
    assert resp.status == 201
    assert resp.headers["X-Echo"] == "yes"
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    data = await resp.json()
    assert data["method"] == "PUT"
    assert data["params"] == {"a": "1,3", "b": "two"}  # repeated keys joined like ASP.NET
    assert data["route_params"] == {}
    assert data["x_test"] == "hdr"
    assert data["content_type"] == "application/json"
    assert data["body"] == '{"hello": "world"}'
    assert data["url"].endswith("/api/echo?a=1&b=two&a=3")


async def test_default_route_is_function_name_and_all_methods(client: Client) -> None:
    for method in ("GET", "POST", "PATCH", "DELETE"):
        resp = await client.request(method, "/api/default_route")
        assert resp.status == 200
        assert await resp.text() == f"default route via {method}"
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    resp = await client.get("/api/namedfunction")
    assert resp.status == 200
    assert await resp.text() == "named"
    assert resp.headers["Content-Type"] == "text/html; charset=latin-1"


async def test_exception_gives_500_without_details(client: Client) -> None:
    for path in ("/api/boom", "/api/boom-async"):
        resp = await client.get(path)
        assert resp.status == 500
        body = await resp.read()
        assert body == b""


async def test_none_return_is_204(client: Client) -> None:
    resp = await client.get("/api/nothing")
    assert resp.status == 204
    assert await resp.read() == b""


async def test_context_argument(client: Client) -> None:
    resp = await client.get(
        "/api/context/async",
        headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )
    data = await resp.json()
    assert data["function_name"] == "with_context"
    assert data["function_directory"] == str(SAMPLE_DIR.resolve())
    assert len(data["invocation_id"]) == 36
    # same trace id, new span id
    assert data["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert not data["traceparent"].endswith("b7ad6b7169203331-01")
    sync = await (await client.get("/api/context/sync")).json()
    assert sync["function_name"] == "with_context_sync"
    assert sync["invocation_id"] != data["invocation_id"]


async def test_async_handlers_run_concurrently(client: Client) -> None:
    n = 20
    resps = await asyncio.gather(
        *(client.get(f"/api/concurrency/async?batch=a1&n={n}") for _ in range(n))
    )
    assert [r.status for r in resps] == [200] * n
    assert {await r.text() for r in resps} == {"together"}


async def test_sync_handlers_run_in_parallel_threads(client: Client) -> None:
    n = 4
    resps = await asyncio.gather(
        *(client.get(f"/api/concurrency/sync?batch=s1&n={n}") for _ in range(n))
    )
    assert [r.status for r in resps] == [200] * n
    names = {await r.text() for r in resps}
    assert len(names) == n  # n distinct worker threads were blocked together


async def test_empty_route_prefix(sample_state: Any) -> None:
    app = create_host_app(sample_state, route_prefix="", environ=SAMPLE_ENV)
    async with TestClient(TestServer(app)) as c:
        assert await (await c.get("/hello/x")).text() == "Hello, x"
        assert (await c.get("/api/hello/x")).status == 404
        status = await (await c.get("/admin/host/status")).json()
        assert status["state"] == "Running"


async def test_homepage(client: Client) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    assert "up and running" in await resp.text()


async def test_admin_function_metadata(client: Client) -> None:
    data = await (await client.get("/admin/functions/hello")).json()
    assert data["name"] == "hello"
    assert data["invoke_url_template"].endswith("/api/hello/{name}")
    assert data["config"]["bindings"][0]["type"] == "httpTrigger"
    listing = await (await client.get("/admin/functions")).json()
    assert {"hello", "eg_handler", "timer_fn"} <= {f["name"] for f in listing}
