"""Requests the HTTP parser refuses are answered like Kestrel answers them, and nothing of
the request is echoed: not in the response, not in the log (issue 12 item 7).

Over a raw socket against the real CLI (``python -m localdev.host``), whose output is what
``make run`` writes to app.log. Kestrel's answers: 400 for a malformed request, 414 for a
request line over MaxRequestLineSize (8 KB), 431 for headers over
MaxRequestHeadersTotalSize (32 KB) or MaxRequestHeaderCount (100): KestrelServerLimits
(learn.microsoft.com/dotnet/api/microsoft.aspnetcore.server.kestrel.core.kestrelserverlimits)
and Kestrel's BadHttpRequestException (dotnet/aspnetcore,
src/Servers/Kestrel/Core/src/BadHttpRequestException.cs).
"""

from __future__ import annotations

import secrets
import socket
import time
from urllib.parse import urlsplit

import pytest

from localdev.host import HostProcess

REFUSED = "refused a malformed request"


def raw_request(host: HostProcess, data: bytes) -> tuple[int, bytes, bytes]:
    """Send bytes as they are; return (status, head, body) of the answer."""
    parts = urlsplit(host.base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    answer = b"".join(chunks)
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


def wait_for_log(host: HostProcess, count: int) -> str:
    """The log once it holds ``count`` refusal lines (bounded wait on state)."""
    deadline = time.monotonic() + 10
    text = host.log_text()
    while text.count(REFUSED) < count and time.monotonic() < deadline:
        time.sleep(0.05)
        text = host.log_text()
    assert text.count(REFUSED) >= count, text[-2000:]
    return text


def request_with(*headers: bytes, target: bytes = b"/api/hello/x") -> bytes:
    return (b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(
        h + b"\r\n" for h in headers) + b"\r\n")


def cases(secret: bytes) -> list[tuple[str, bytes, int]]:
    bearer = b"Authorization: Bearer " + secret
    return [
        ("nul-after-token", request_with(bearer + b"\x00"), 400),
        ("nul-inside-token", request_with(b"Authorization: Bearer ab\x00" + secret), 400),
        ("bad-header-name", request_with(bearer, b"Bad Name: " + secret), 400),
        ("header-over-32KiB", request_with(bearer, b"X-Big: " + b"a" * 40000), 431),
        ("token-over-32KiB", request_with(bearer + b"a" * 40000), 431),
        ("101-headers", request_with(bearer, *(b"X-%d: 1" % i for i in range(100))), 431),
        ("line-over-8KiB", request_with(bearer, target=b"/api/hello/" + b"x" * 9000), 414),
        ("bare-lf-garbage", b"GET / HTTP/1.1\r\n" + bearer + b"\r\nX\r\n\r\n", 400),
    ]


@pytest.mark.parametrize("name", [name for name, _, _ in cases(b"")])
def test_refused_requests_are_answered_like_kestrel_without_echo(
        host_process: HostProcess, name: str) -> None:
    secret = ("SECRET" + secrets.token_hex(16)).encode()
    data, expected = next((d, s) for n, d, s in cases(secret) if n == name)
    before = host_process.log_text().count(REFUSED)
    status, head, body = raw_request(host_process, data)
    assert status == expected, (head, body)
    assert body == b"", body
    assert secret not in head and b"Bearer" not in head
    text = wait_for_log(host_process, before + 1)
    assert secret.decode() not in text
    assert "Bearer" not in text


def test_a_20_kib_header_reaches_the_app_as_under_kestrel(host_process: HostProcess) -> None:
    """Kestrel limits the header section (32 KB), not one header: a 20 KiB token is the
    app's to judge (aiohttp's default 8 KiB per line would refuse it)."""
    status, head, body = raw_request(host_process, request_with(
        b"Authorization: Bearer " + b"a" * 20000, b"Connection: close"))
    assert status == 200, (head, body)
    assert body.endswith(b"Hello, x")
