"""The web sample (examples/web) in the local stack: built with esbuild, given a config.json,
and served on an origin of its own (another port than the API's), so that a browser does
real CORS against the API and the issuer, as it would against Azure.

``python -m localdev.stack.web --root DIR --port N`` serves a built folder (what the stack
runs as its ``web`` child). Loopback only; no directory listings; nothing cached, so a
rebuilt bundle is what the next reload gets.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from localdev.files import write_json_atomic

from .children import StackError

REPO_ROOT = Path(__file__).resolve().parents[2]
WEB_SOURCE = REPO_ROOT / "examples" / "web"
#: The sample's OIDC client id on the local issuer (``webClientId`` in stack.json).
WEB_CLIENT_ID = "acs-token-service-web"
BUILD_TIMEOUT = 120.0


@dataclass(frozen=True)
class WebSample:
    """Where the sample is served and what it is registered as."""

    port: int
    root: Path
    client_id: str = WEB_CLIENT_ID

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.origin + "/"

    @property
    def redirect_uri(self) -> str:
        """The page itself: it finishes the sign-in when it is loaded with ``code`` and
        ``state`` (an Entra ID SPA registration names the same URL)."""
        return self.url

    @property
    def ready_file(self) -> Path:
        return self.root.parent / "web.json"

    def issuer_args(self) -> list[str]:
        """Register the sample as a public client (PKCE, no secret) on the local issuer."""
        return ["--public-client", f"{self.client_id}={self.redirect_uri}"]

    def host_args(self) -> list[str]:
        """Allow the sample's origin in localdev.host's CORS (bearer tokens, no cookies)."""
        return ["--cors", self.origin]

    def host_settings(self) -> dict[str, Any]:
        """The same for ``func start``: local.settings.json ``Host.CORS``, as Core Tools reads."""
        return {"CORS": self.origin}

    def build(self) -> None:
        """Bundle the sample into ``root`` (esbuild from node_modules; about a second)."""
        node = shutil.which("node")
        if node is None:
            raise StackError("node is not on PATH: it builds the web sample (or pass --no-web)")
        cmd = [node, str(WEB_SOURCE / "build.mjs"), "--outdir", str(self.root)]
        try:
            done = subprocess.run(
                cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"building the web sample took over {BUILD_TIMEOUT:g}s") from exc
        if done.returncode != 0:
            raise StackError(
                "building the web sample failed (run `make setup` for esbuild):\n"
                + (done.stderr or done.stdout)[-2000:]
            )

    def write_config(self, *, authority: str, api_scope: str, api_base: str) -> None:
        """config.json beside the bundle: all the page needs to know (examples/web/README.md)."""
        write_json_atomic(self.root / "config.json", {
            "authority": authority,
            "clientId": self.client_id,
            "redirectUri": self.redirect_uri,
            "apiScope": api_scope,
            "apiBase": api_base,
        })  # fmt: skip

    def serve_command(self) -> list[str]:
        return [
            sys.executable, "-m", "localdev.stack.web",
            "--root", str(self.root),
            "--port", str(self.port),
            "--ready-file", str(self.ready_file),
        ]  # fmt: skip

    def info(self) -> dict[str, str]:
        """The stack.json keys (a named contract: keep them)."""
        return {
            "webUrl": self.url,
            "webClientId": self.client_id,
            "webRedirectUri": self.redirect_uri,
        }


class StaticHandler(SimpleHTTPRequestHandler):
    """Files from one folder; no listings, no caching, no sniffing."""

    def list_directory(self, path: str | os.PathLike[str]) -> None:
        self.send_error(404, "Not found")
        return None

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        super().end_headers()


def make_server(root: Path, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    handler = functools.partial(StaticHandler, directory=str(root))
    return ThreadingHTTPServer((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m localdev.stack.web",
                                description="Serve a built web sample folder on loopback.")
    p.add_argument("--root", required=True, help="the built folder (index.html, app.js, ...)")
    p.add_argument("--port", type=int, default=0, help="0 = any free port")
    p.add_argument("--ready-file", help="write {pid, port, url} here once listening")
    args = p.parse_args(argv)
    root = Path(args.root).resolve()
    if not (root / "index.html").is_file():
        print(f"{root} has no index.html; build it with node examples/web/build.mjs",
              file=sys.stderr)
        return 2
    server = make_server(root, args.port)
    port = int(server.server_address[1])
    if args.ready_file:
        write_json_atomic(Path(args.ready_file), {
            "pid": os.getpid(), "port": port, "url": f"http://127.0.0.1:{port}/",
        })  # fmt: skip
    print(f"serving {root} at http://127.0.0.1:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
