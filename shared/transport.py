"""HTTP options shared by the SDK clients."""

from __future__ import annotations

import os

_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                    "all_proxy")


def use_env_settings() -> bool:
    """Whether the SDKs should read proxy settings and ~/.netrc from the environment.

    With it on, azure-core's aiohttp transport looks both up in a thread pool on every
    request (two thread hops per request, ~35 % of a token's CPU in `make bench`), so it
    is on only when a proxy is actually configured.
    """
    return any(os.environ.get(name) for name in _PROXY_VARIABLES)
