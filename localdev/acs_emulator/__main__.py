"""python -m localdev.acs_emulator --data-dir DIR [options]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .server import Config, run
from .throttle import WINDOW_SECONDS


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(
        prog="python -m localdev.acs_emulator",
        description="Offline stand-in for the Azure Communication Services Identity data plane.",
    )
    p.add_argument("--data-dir", required=True, type=Path, help="keys, CA, acs.json live here")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: pick a free one)")
    p.add_argument(
        "--access-key", default=None, help="base64 access key (default: persisted random)"
    )
    p.add_argument("--resource-id", default=None, help="resource GUID (default: persisted random)")
    p.add_argument("--state-file", type=Path, default=None, help="persist identities here")
    p.add_argument(
        "--rate-scale",
        type=float,
        default=1.0,
        help="multiply the published per-30s limits (limit is at least 1)",
    )
    p.add_argument(
        "--throttle-window",
        type=float,
        default=WINDOW_SECONDS,
        help="throttling window in seconds (default 30, like Azure; tests use less)",
    )
    p.add_argument(
        "--trusted-jwks-uri",
        default=None,
        help="accept Entra Bearer tokens and Teams exchange tokens signed by keys at this JWKS URI",
    )
    p.add_argument("--jwks-ca-file", default=None, help="CA bundle for an https JWKS URI")
    p.add_argument(
        "--revoke-delay",
        type=float,
        default=0.0,
        help="seconds before a revoke takes effect (Azure: up to 900; default 0: immediately)",
    )
    p.add_argument(
        "--expires-on-digits",
        type=int,
        default=None,
        help="fixed fractional digits in expiresOn, 0..7 (default: up to 7, trailing zeros "
        "dropped, like the service)",
    )
    a = p.parse_args(argv)
    if a.revoke_delay < 0:
        p.error("--revoke-delay must be >= 0")
    if a.expires_on_digits is not None and not 0 <= a.expires_on_digits <= 7:
        p.error("--expires-on-digits must be 0..7")
    if a.rate_scale <= 0:
        p.error("--rate-scale must be > 0")
    if a.throttle_window <= 0:
        p.error("--throttle-window must be > 0")
    return Config(
        data_dir=a.data_dir,
        host=a.host,
        port=a.port,
        access_key=a.access_key,
        resource_id=a.resource_id,
        state_file=a.state_file.resolve() if a.state_file else None,
        rate_scale=a.rate_scale,
        throttle_window=a.throttle_window,
        trusted_jwks_uri=a.trusted_jwks_uri,
        jwks_cafile=a.jwks_ca_file,
        revoke_delay=a.revoke_delay,
        expires_on_digits=a.expires_on_digits,
    )


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
