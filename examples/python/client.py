"""Get Azure Communication Services tokens from the token service, the way an app does it.

The official ``CommunicationTokenCredential`` (from ``azure-communication-chat``) calls our
``token_refresher`` whenever its token is missing or about to expire; the refresher calls
``POST /api/token`` with the signed-in user's bearer token (from your identity provider; the
local stack prints one).

    API_BASE=http://127.0.0.1:7071/api BEARER_TOKEN=eyJ... python examples/python/client.py
    python examples/python/client.py --api-base URL --bearer-token TOKEN [--scopes chat,voip]

``API`` and ``TOKEN`` (the names ``make run`` prints) work too.

Output (one line each): ``ACS user id: 8:acs:...``, ``Token expires: <ISO time>``,
``Refreshes: N``, then the same as one JSON line. When the service refuses, it prints the
status and the error body on stderr and exits with status 1.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any

from azure.communication.chat import CommunicationTokenCredential
from azure.core.credentials import AccessToken


class RefreshFailed(Exception):
    """The token service refused, or could not be reached; the message says which."""


class TokenServiceRefresher:
    """``token_refresher`` for CommunicationTokenCredential: POST {api}/token."""

    def __init__(self, api_base: str, bearer_token: str, scopes: list[str] | None = None,
                 minutes: int | None = None) -> None:
        self.url = api_base.rstrip("/") + "/token"
        self.bearer_token = bearer_token
        self.body: dict[str, Any] = {}
        if scopes:
            self.body["scopes"] = scopes
        if minutes:
            self.body["expiresInMinutes"] = minutes
        self.calls = 0
        self.acs_user_id: str | None = None

    def __call__(self) -> AccessToken:
        self.calls += 1
        request = urllib.request.Request(
            self.url,
            data=json.dumps(self.body).encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {self.bearer_token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                reply = json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise RefreshFailed(f"POST {self.url} failed: {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RefreshFailed(f"POST {self.url} failed: {reason}") from None
        self.acs_user_id = reply["acsUserId"]
        expires = datetime.fromisoformat(reply["expiresOn"].replace("Z", "+00:00"))
        return AccessToken(reply["token"], int(expires.timestamp()))


def _expired_placeholder() -> str:
    """The credential needs an initial token; an expired one makes it refresh at once."""
    payload = json.dumps({"exp": int(time.time()) - 60}).encode()
    return "e30." + base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + ".x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-base", default=os.environ.get("API_BASE") or os.environ.get("API"),
                        help="token service API base (env API_BASE or API), "
                        "e.g. http://127.0.0.1:7071/api")
    parser.add_argument("--bearer-token",
                        default=os.environ.get("BEARER_TOKEN") or os.environ.get("TOKEN"),
                        help="the caller's bearer token (env BEARER_TOKEN or TOKEN)")
    parser.add_argument("--scopes", default="", help="comma list, e.g. chat,voip (default: "
                        "the service's default scopes)")
    parser.add_argument("--minutes", type=int, default=None,
                        help="expiresInMinutes, 60..1440 (default: the service's)")
    args = parser.parse_args(argv)
    if not args.api_base or not args.bearer_token:
        parser.error("give --api-base and --bearer-token (or set API_BASE and BEARER_TOKEN)")

    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    refresher = TokenServiceRefresher(args.api_base, args.bearer_token, scopes, args.minutes)
    # The credential also refreshes on its own timer thread: a refusal there is reported
    # once, by the main thread, not as a thread's traceback.
    default_hook = threading.excepthook
    threading.excepthook = lambda hook_args: (
        None if isinstance(hook_args.exc_value, RefreshFailed) else default_hook(hook_args))
    try:
        with CommunicationTokenCredential(_expired_placeholder(), token_refresher=refresher,
                                          proactive_refresh=True) as credential:
            token = credential.get_token()   # what every ACS client (chat, calling) calls
            token = credential.get_token()   # cached: no second call to the service
    except RefreshFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    expires = datetime.fromtimestamp(token.expires_on, timezone.utc).isoformat()
    print(f"ACS user id: {refresher.acs_user_id}")
    print(f"Token expires: {expires}")
    print(f"Refreshes: {refresher.calls}")
    print(json.dumps({"acsUserId": refresher.acs_user_id, "expiresOn": expires,
                      "refreshes": refresher.calls, "token": token.token}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
