"""CLI: python -m localdev.issuer {serve,mint,mint-teams} --data-dir DIR ..."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .keys import DEFAULT_AUDIENCE, SUPPORTED_ALGS, IssuerKeys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m localdev.issuer",
        description="Local OIDC issuer / managed identity endpoint for offline development.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve discovery, JWKS and the MI endpoint over HTTP")
    serve.add_argument("--data-dir", required=True)
    serve.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=0, help="0 = any free port (default)")
    serve.add_argument("--audience", default=DEFAULT_AUDIENCE)
    serve.add_argument(
        "--public-client",
        dest="public_clients",
        action="append",
        default=[],
        metavar="CLIENT_ID=REDIRECT_URI",
        help="register a public client (SPA) for the authorization code flow with PKCE; "
        "repeatable, also for several redirect URIs of one client",
    )

    mint = sub.add_parser("mint", help="print a caller JWT (no server needed)")
    mint.add_argument("--data-dir", required=True)
    mint.add_argument("--sub", required=True)
    mint.add_argument("--oid", default=None, help="default: same as --sub")
    mint.add_argument("--role", dest="roles", action="append", default=[], help="repeatable")
    mint.add_argument("--minutes", type=float, default=60)
    mint.add_argument("--aud", default=None, help="default: audience in DIR/issuer.json")
    mint.add_argument("--alg", choices=SUPPORTED_ALGS, default="RS256")
    mint.add_argument("--issuer", default=None, help="default: issuer in DIR/issuer.json")

    teams = sub.add_parser("mint-teams", help="print an Entra-like Teams user access token")
    teams.add_argument("--data-dir", required=True)
    teams.add_argument("--oid", required=True)
    teams.add_argument("--appid", required=True)
    teams.add_argument("--minutes", type=float, default=60)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from .oidc import parse_public_client
        from .server import serve_forever

        clients: dict[str, list[str]] = {}
        try:
            for text in args.public_clients:
                client_id, uri = parse_public_client(text)
                clients.setdefault(client_id, []).append(uri)
        except ValueError as exc:
            print(f"issuer: {exc}", file=sys.stderr)
            return 2
        return serve_forever(args.data_dir, args.host, args.port, args.audience, clients)

    keys = IssuerKeys.load_or_create(args.data_dir)
    if args.command == "mint":
        try:
            token = keys.mint(
                sub=args.sub,
                issuer=args.issuer,
                audience=args.aud,
                roles=tuple(args.roles),
                minutes=args.minutes,
                alg=args.alg,
                oid=args.oid,
            )
        except ValueError as exc:
            print(f"issuer: {exc}", file=sys.stderr)
            return 2
    else:
        token = keys.mint_teams(oid=args.oid, appid=args.appid, minutes=args.minutes)
    sys.stdout.write(token + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
