"""Per-operation fixed-window rate limits (30 s windows, like the published ACS limits)."""

from __future__ import annotations

import math

# Published ACS Identity limits per resource, per 30 seconds.
BASE_LIMITS: dict[str, int] = {
    "createIdentity": 1000,
    "issueAccessToken": 1000,
    "deleteIdentity": 500,
    "revokeAccessTokens": 500,
    "exchangeTeamsUserAccessToken": 500,
}
WINDOW_SECONDS = 30.0


class _Window:
    __slots__ = ("count", "limit", "start")

    def __init__(self, limit: int):
        self.limit = limit
        self.start = -math.inf
        self.count = 0


class Throttle:
    """A fixed window per operation that opens with the first request after the last closed.

    ``hit(op, now)`` returns ``None`` when the request is allowed (and counts it)
    or the integer Retry-After (>= 1 s): the time until the current window ends.
    """

    def __init__(self, rate_scale: float = 1.0, window: float = WINDOW_SECONDS):
        if rate_scale <= 0:
            raise ValueError("rate_scale must be > 0")
        if window <= 0:
            raise ValueError("window must be > 0")
        self.window = float(window)
        self.limits = {
            op: max(1, math.floor(base * rate_scale + 1e-9)) for op, base in BASE_LIMITS.items()
        }
        self._windows: dict[str, _Window] = {}
        self.reset()

    def reset(self) -> None:
        self._windows = {op: _Window(limit) for op, limit in self.limits.items()}

    def hit(self, op: str, now: float) -> int | None:
        w = self._windows[op]
        if now >= w.start + self.window:
            w.start = now
            w.count = 0
        if w.count < w.limit:
            w.count += 1
            return None
        return max(1, math.ceil(w.start + self.window - now))
