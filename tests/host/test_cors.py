"""CORS over real HTTP against ``python -m localdev.host`` (HostProcess).

What is expected comes from the two real implementations this host stands in for:
- Core Tools builds ASP.NET Core's CORS middleware from ``Host.CORS`` / ``--cors`` with
  ``WithOrigins(...).AllowAnyHeader().AllowAnyMethod()`` and ``AllowCredentials()`` for
  ``Host.CORSCredentials`` (azure-functions-core-tools, Actions/HostActions/Startup.cs);
- that middleware answers every preflight itself with 204, and sends no CORS header at all
  for an origin outside the policy (dotnet/aspnetcore, Middleware/CORS/.../CorsMiddleware.cs
  and CorsService.ApplyResult: "its HTTP response to the CORS or CORS-preflight request must
  not include any of the above headers"). With AllowAnyHeader/AllowAnyMethod it echoes the
  requested headers and method.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from localdev.host import HostProcess, HostStartError
from localdev.host.__main__ import cors_policy

from .conftest import SAMPLE_DIR

WEB = "http://localhost:5173"
OTHER_ALLOWED = "http://127.0.0.1:8081"
EVIL = "http://evil.example"
CORS_HEADERS = (
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Credentials",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Headers",
    "Access-Control-Max-Age",
    "Access-Control-Expose-Headers",
)


def _settings(tmp: Path, host: dict[str, object]) -> Path:
    path = tmp / "local.settings.json"
    path.write_text(
        json.dumps(
            {
                "IsEncrypted": False,
                "Values": {"SAMPLE_SCHEDULE": "0 0 0 1 1 *", "FUNCTIONS_WORKER_RUNTIME": "python"},
                "Host": host,
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def from_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    """Origins from local.settings.json Host.CORS (spaces after commas allowed), no credentials."""
    settings = _settings(
        tmp_path_factory.mktemp("cors-settings"), {"CORS": f"{WEB}, {OTHER_ALLOWED}/"}
    )
    with HostProcess(SAMPLE_DIR, settings_file=settings, timers=False) as host:
        yield host


@pytest.fixture(scope="module")
def cli_with_credentials(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    """--cors / --cors-credentials win over a settings file that says otherwise."""
    settings = _settings(
        tmp_path_factory.mktemp("cors-cli"), {"CORS": EVIL, "CORSCredentials": False}
    )
    with HostProcess(
        SAMPLE_DIR, settings_file=settings, timers=False, cors=WEB, cors_credentials=True
    ) as host:
        yield host


@pytest.fixture(scope="module")
def any_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    settings = _settings(tmp_path_factory.mktemp("cors-any"), {})
    with HostProcess(SAMPLE_DIR, settings_file=settings, timers=False, cors="*") as host:
        yield host


def _preflight(
    host: HostProcess,
    path: str,
    origin: str,
    method: str = "POST",
    headers: str | None = "authorization,content-type",
) -> requests.Response:
    request_headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        request_headers["Access-Control-Request-Headers"] = headers
    return requests.options(host.url(path), headers=request_headers, timeout=10)


def _no_cors_headers(resp: requests.Response) -> None:
    present = [h for h in CORS_HEADERS if h in resp.headers]
    assert not present, f"unexpected CORS headers {present}: {dict(resp.headers)}"


def _vary(resp: requests.Response) -> list[str]:
    return [v.strip().lower() for v in resp.headers.get("Vary", "").split(",") if v.strip()]


# ------------------------------------------------------------------------------ preflight


def test_preflight_for_an_allowed_origin(from_settings: HostProcess) -> None:
    resp = _preflight(from_settings, "/api/echo", WEB)
    assert resp.status_code == 204
    assert resp.content == b""
    assert resp.headers["Access-Control-Allow-Origin"] == WEB
    assert resp.headers["Access-Control-Allow-Methods"] == "POST"
    allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert int(resp.headers["Access-Control-Max-Age"]) > 0
    assert "origin" in _vary(resp)
    assert "Access-Control-Allow-Credentials" not in resp.headers


def test_preflight_echoes_requested_headers_and_method(from_settings: HostProcess) -> None:
    resp = _preflight(
        from_settings, "/api/items/1", OTHER_ALLOWED, method="DELETE", headers="X-Custom, Authorization"
    )
    assert resp.status_code == 204
    assert resp.headers["Access-Control-Allow-Origin"] == OTHER_ALLOWED
    assert resp.headers["Access-Control-Allow-Methods"] == "DELETE"
    assert resp.headers["Access-Control-Allow-Headers"] == "X-Custom,Authorization"


def test_preflight_never_reaches_the_function(from_settings: HostProcess) -> None:
    # default_route accepts every method, OPTIONS included: only the host may answer.
    before = from_settings.log_text().count("Executing 'Functions.default_route'")
    resp = _preflight(from_settings, "/api/default_route", WEB, method="GET")
    assert resp.status_code == 204
    assert resp.content == b""
    # a plain GET afterwards is invoked (and logged): the count moves only by that call
    assert requests.get(from_settings.url("/api/default_route"), timeout=10).status_code == 200
    after = from_settings.log_text().count("Executing 'Functions.default_route'")
    assert after == before + 1


def test_preflight_for_a_disallowed_origin_is_204_without_cors_headers(
    from_settings: HostProcess,
) -> None:
    resp = _preflight(from_settings, "/api/echo", EVIL)
    assert resp.status_code == 204
    _no_cors_headers(resp)
    assert "origin" not in _vary(resp)


def test_preflight_to_an_unknown_route_is_still_answered(from_settings: HostProcess) -> None:
    # The CORS middleware runs before routing in the host, so the route does not matter.
    resp = _preflight(from_settings, "/api/does-not-exist", WEB)
    assert resp.status_code == 204
    assert resp.headers["Access-Control-Allow-Origin"] == WEB


def test_options_without_request_method_is_not_a_preflight(from_settings: HostProcess) -> None:
    resp = requests.options(
        from_settings.url("/api/default_route"), headers={"Origin": WEB}, timeout=10
    )
    assert resp.status_code == 200
    assert resp.text == "default route via OPTIONS"
    assert resp.headers["Access-Control-Allow-Origin"] == WEB


# ------------------------------------------------------------------------------ actual


def test_actual_response_for_an_allowed_origin(from_settings: HostProcess) -> None:
    resp = requests.post(
        from_settings.url("/api/echo"),
        data=b"{}",
        headers={"Origin": WEB, "Content-Type": "application/json"},
        timeout=10,
    )
    assert resp.status_code == 201
    assert resp.headers["Access-Control-Allow-Origin"] == WEB
    assert "origin" in _vary(resp)
    assert resp.headers["X-Echo"] == "yes"  # the function's own headers are untouched
    for name in ("Access-Control-Allow-Credentials", "Access-Control-Expose-Headers"):
        assert name not in resp.headers


def test_exposed_headers_come_only_from_the_function(from_settings: HostProcess) -> None:
    # Neither the platform nor Core Tools configure exposed headers; ASP.NET Core's middleware
    # only adds headers, so one the function sets itself reaches the browser unchanged.
    resp = requests.get(from_settings.url("/api/throttled"), headers={"Origin": WEB}, timeout=10)
    assert resp.status_code == 429
    assert resp.headers["Access-Control-Allow-Origin"] == WEB
    assert resp.headers["Access-Control-Expose-Headers"] == "Retry-After"
    assert resp.headers["Retry-After"] == "7"


def test_error_responses_carry_cors_headers_too(from_settings: HostProcess) -> None:
    # 401 from the host's key check, 404 from routing, 500 from a failing function: the
    # browser can read the status of each only if the CORS headers are there.
    for path, status in (("/api/secure/function", 401), ("/api/nope", 404), ("/api/boom", 500)):
        resp = requests.get(from_settings.url(path), headers={"Origin": WEB}, timeout=10)
        assert resp.status_code == status, path
        assert resp.headers["Access-Control-Allow-Origin"] == WEB, path


def test_actual_response_for_a_disallowed_origin_has_no_cors_headers(
    from_settings: HostProcess,
) -> None:
    resp = requests.get(from_settings.url("/api/hello/x"), headers={"Origin": EVIL}, timeout=10)
    assert resp.status_code == 200  # the server answers; the browser withholds it from the page
    assert resp.text == "Hello, x"
    _no_cors_headers(resp)
    assert "origin" not in _vary(resp)


def test_request_without_origin_has_no_cors_headers(from_settings: HostProcess) -> None:
    resp = requests.get(from_settings.url("/api/hello/x"), timeout=10)
    assert resp.status_code == 200
    _no_cors_headers(resp)


def test_origin_match_is_exact(from_settings: HostProcess) -> None:
    for origin in ("http://localhost:5174", "https://localhost:5173", "http://localhost"):
        resp = requests.get(
            from_settings.url("/api/hello/x"), headers={"Origin": origin}, timeout=10
        )
        _no_cors_headers(resp)


# ----------------------------------------------------------------------------- credentials


def test_cli_overrides_settings_and_enables_credentials(
    cli_with_credentials: HostProcess,
) -> None:
    pre = _preflight(cli_with_credentials, "/api/echo", WEB)
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == WEB
    assert pre.headers["Access-Control-Allow-Credentials"] == "true"
    resp = requests.get(
        cli_with_credentials.url("/api/hello/x"), headers={"Origin": WEB}, timeout=10
    )
    assert resp.headers["Access-Control-Allow-Origin"] == WEB
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    assert "origin" in _vary(resp)
    # the settings file's origin lost to --cors
    refused = _preflight(cli_with_credentials, "/api/echo", EVIL)
    assert refused.status_code == 204
    _no_cors_headers(refused)


# ----------------------------------------------------------------------------------- any


def test_any_origin_without_credentials_answers_star(any_origin: HostProcess) -> None:
    pre = _preflight(any_origin, "/api/echo", EVIL)
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in pre.headers
    resp = requests.get(any_origin.url("/api/hello/x"), headers={"Origin": WEB}, timeout=10)
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in resp.headers


def test_any_origin_with_credentials_refuses_to_start(tmp_path: Path) -> None:
    # ASP.NET Core throws on AllowAnyOrigin + AllowCredentials (InsecureConfiguration).
    settings = _settings(tmp_path, {"CORS": "*", "CORSCredentials": True})
    with pytest.raises(HostStartError, match="cannot be combined with credentials"):
        HostProcess(SAMPLE_DIR, settings_file=settings, timers=False).start()


def test_an_origin_with_a_path_refuses_to_start(tmp_path: Path) -> None:
    settings = _settings(tmp_path, {})
    with pytest.raises(HostStartError, match="not an origin"):
        HostProcess(
            SAMPLE_DIR, settings_file=settings, timers=False, cors="http://localhost:5173/app"
        ).start()


def test_empty_cli_cors_turns_off_the_settings_file_cors(tmp_path: Path) -> None:
    settings = _settings(tmp_path, {"CORS": WEB})
    with HostProcess(SAMPLE_DIR, settings_file=settings, timers=False, cors="") as host:
        resp = _preflight(host, "/api/echo", WEB)
        assert resp.status_code == 404
        _no_cors_headers(resp)


def test_settings_example_host_section_is_a_valid_cors_policy() -> None:
    example = json.loads((SAMPLE_DIR.parents[2] / "local.settings.json.example").read_text())
    policy = cors_policy(example["Host"], None, None)
    assert policy is not None
    assert not policy.any_origin
    assert not policy.credentials
    assert WEB in policy.origins


def test_without_cors_a_preflight_goes_to_routing(host_process: HostProcess) -> None:
    # No Host.CORS and no --cors: no CORS middleware (Core Tools registers it only then), so
    # OPTIONS is routed like any request: 404 where no function takes OPTIONS.
    resp = _preflight(host_process, "/api/echo", WEB)
    assert resp.status_code == 404
    _no_cors_headers(resp)
