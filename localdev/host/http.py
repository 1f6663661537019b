"""HTTP trigger plumbing: routes, request conversion, response rendering."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from aiohttp import web
from azure.functions import _abc as azf_abc
from azure.functions.http import HttpRequest as WorkerHttpRequest
from multidict import CIMultiDict, MultiMapping

from .keys import AuthLevel
from .loader import FunctionInfo, FunctionLoadError
from .routes import RouteTemplate, RouteTemplateError

__all__ = ["HttpRoute", "build_http_routes", "render_result", "to_func_request"]

log = logging.getLogger("localdev.host")

_HOP_HEADERS = {"content-length", "transfer-encoding", "connection"}


@dataclass
class HttpRoute:
    function: FunctionInfo
    template: RouteTemplate
    methods: frozenset[str] | None  # None = any method
    auth_level: str

    def allows(self, method: str) -> bool:
        return self.methods is None or method.upper() in self.methods


def build_http_routes(functions: Iterable[FunctionInfo]) -> list[HttpRoute]:
    routes: list[HttpRoute] = []
    for fn in functions:
        if not fn.is_http or fn.disabled:
            continue
        route_text = fn.trigger.get("route")
        if route_text is None:
            route_text = fn.name
        try:
            template = RouteTemplate(str(route_text))
        except RouteTemplateError as exc:
            raise FunctionLoadError(f"function '{fn.name}': {exc}") from exc
        methods = fn.trigger.get("methods") or None
        routes.append(
            HttpRoute(
                function=fn,
                template=template,
                methods=frozenset(str(m).upper() for m in methods) if methods else None,
                auth_level=AuthLevel.normalize(fn.trigger.get("authLevel")),
            )
        )
    # stable sort: registration order breaks ties, like the host's route table
    routes.sort(key=lambda r: r.template.sort_key())
    return routes


def _join(values: MultiMapping[str]) -> dict[str, str]:
    """Repeated keys joined with ',' (ASP.NET StringValues.ToString())."""
    out: dict[str, str] = {}
    for key in values:
        if key not in out:
            out[key] = ",".join(values.getall(key))
    return out


def request_headers(request: web.Request) -> dict[str, str]:
    return _join(request.headers)


def request_query(request: web.Request) -> dict[str, str]:
    return _join(request.query)


async def to_func_request(
    request: web.Request, route_values: dict[str, str], body: bytes | None = None
) -> func.HttpRequest:
    """What the Python worker builds from the host's RpcHttp (raw body bytes)."""
    if body is None:
        body = await request.read()
    return WorkerHttpRequest(
        method=request.method,
        url=str(request.url),
        headers=request_headers(request),
        params=request_query(request),
        route_params=dict(route_values),
        body_type="bytes",
        body=body,
    )


def render_result(fn: FunctionInfo, return_value: Any, outputs: dict[str, Any]) -> web.Response:
    """Turn the function's HTTP output into an aiohttp response (raises TypeError if invalid)."""
    out_name = fn.http_output_name
    if out_name is None or out_name == "$return":
        value = return_value
    else:
        out = outputs.get(out_name)
        value = out.get() if out is not None else None
    if value is None:
        return web.Response(status=204)
    if isinstance(value, str):
        return web.Response(
            status=200,
            body=value.encode("utf-8"),
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
    if isinstance(value, azf_abc.HttpResponse):
        return _render_http_response(value)
    raise TypeError(
        f"unable to encode outgoing TypedData: unsupported type for the HTTP output "
        f"binding: {type(value).__name__}"
    )


def _render_http_response(resp: azf_abc.HttpResponse) -> web.Response:
    # Mirrors azure.functions.http.HttpResponseConverter.encode
    headers: CIMultiDict[str] = CIMultiDict()
    src = resp.headers
    seen_ct = False
    for name, value in src.items():
        if name.lower() in _HOP_HEADERS:
            continue
        if name.lower() == "content-type":
            seen_ct = True
        headers.add(name, value)
    if not seen_ct:
        mimetype = resp.mimetype or "text/plain"
        if mimetype.startswith("text/"):
            headers["Content-Type"] = f"{mimetype}; charset={resp.charset}"
        else:
            headers["Content-Type"] = mimetype
    body = resp.get_body() or b""
    status = int(resp.status_code)
    if status in (204, 304) or 100 <= status < 200:
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, body=body, headers=headers)
