"""HTTP helpers for the end-to-end tests: talk to the stack the way a client would."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from localdev.stack import Stack

# Never route loopback calls through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, *, body: Any = None, headers: dict[str, str] | None = None,
         token: str | None = None, context: ssl.SSLContext | None = None,
         timeout: float = 30) -> Response:
    data = None
    all_headers = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    opener = _OPENER
    if context is not None:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return Response(resp.status, resp.read(), dict(resp.headers))
    except urllib.error.HTTPError as exc:
        return Response(exc.code, exc.read(), dict(exc.headers))


def stop_stack(proc: subprocess.Popen[Any]) -> None:
    """Stop a `python -m localdev.stack` process still running (a test failed before its own
    stop): SIGTERM lets it stop its children in order; SIGKILL of its group after 30 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll until ``check()`` is truthy; bounded, and never an assertion by itself."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


class StackClient:
    """The session stack, seen from outside: its API and the emulator's control plane."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.api = stack.api_base
        self._ssl = ssl.create_default_context(cafile=stack.ca_file)

    def mint(self, sub: str, roles: tuple[str, ...] = ()) -> str:
        return self.stack.mint(sub, roles=roles, minutes=60)

    def new_user(self) -> tuple[str, str]:
        sub = "e2e-" + uuid.uuid4().hex[:12]
        return sub, self.mint(sub)

    def call(self, method: str, path: str, token: str | None = None, body: Any = None,
             headers: dict[str, str] | None = None) -> Response:
        return http(method, self.api + path, token=token, body=body, headers=headers)

    def issue(self, token: str, **body: Any) -> dict[str, Any]:
        resp = self.call("POST", "/token", token, body or None)
        assert resp.status == 200, resp.body
        result: dict[str, Any] = resp.json()
        return result

    def emulator(self, method: str, name: str, body: Any = None) -> Any:
        url = self.stack.acs_endpoint.rstrip("/") + "/_emulator/" + name
        resp = http(method, url, body=body, context=self._ssl)
        assert resp.status == 200, resp.body
        return resp.json()

    def validate(self, acs_token: str) -> dict[str, Any]:
        result: dict[str, Any] = self.emulator("POST", "validate", {"token": acs_token})
        return result

    def identities(self) -> list[str]:
        return list(self.emulator("GET", "identities")["identities"])

    def post_events(self, events: Any) -> Response:
        return http(
            "POST",
            self.stack.base_url + "/runtime/webhooks/eventgrid?functionName=on_user_event",
            body=events,
            headers={"aeg-event-type": "Notification"},
        )

    def run_purge(self) -> Response:
        return http("POST", self.stack.base_url + "/admin/functions/purge_deleted_users",
                    body={"input": ""})
