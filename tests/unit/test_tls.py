"""localdev.tls (trustme issues the certificates): one CA per directory even when tools
start together, reused across runs, and a server certificate a real TLS client accepts."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from localdev import tls


def test_concurrent_tools_agree_on_one_ca(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        cas = list(pool.map(lambda _: tls.ensure_ca(tmp_path), range(8)))
    assert len({ca.pem for ca in cas}) == 1
    assert tls.ensure_ca(tmp_path).pem == cas[0].pem  # the next run reuses it
    assert (tmp_path / "ca-key.pem").stat().st_mode & 0o077 == 0


def test_server_certificate_verifies_against_the_ca(tmp_path: Path) -> None:
    ca = tls.ensure_ca(tmp_path)
    cert, key = tls.ensure_server_cert(tmp_path, ca, name="svc")
    server_ctx = tls.server_ssl_context(cert, key)
    client_ctx = tls.client_ssl_context(ca.cert_path)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls_conn:
                tls_conn.sendall(b"ok")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                client_ctx.wrap_socket(raw, server_hostname="localhost") as conn:
            assert conn.recv(2) == b"ok"
        thread.join(10)
    # Another directory's CA has its own subject, so its certificates never pass for ours.
    other = tls.ensure_ca(tmp_path / "other")
    assert other.cert.subject != ca.cert.subject
