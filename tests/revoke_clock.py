"""Leave the second of a revoke before counting on a new token.

ACS tokens carry ``iat`` in whole seconds, and a revoke covers its identity's tokens up to the
revoke's second. Whether Azure treats a token issued in the *same* second as the revoke as
revoked is not known; the emulator pushes such a token's ``iat`` a second ahead so that it is
not (docs/emulator.md, "Not known, so not claimed"). Nothing may depend on that push: a test
that asserts a token issued after a revoke works first waits here, right after the revoke
returned, until the clock (the emulator runs on this machine's clock) has left the second the
revoke happened in. The wait is on the clock's state and bounded (under two seconds).
"""

from __future__ import annotations

import asyncio
import time

_BOUND_SECONDS = 5.0


def _remaining(second: int) -> float:
    return second + 1 - time.time()


def _check(started: float) -> None:
    if time.monotonic() - started > _BOUND_SECONDS:  # pragma: no cover - a stuck clock
        raise AssertionError("the wall clock did not advance past the revoke's second")


def leave_revoke_second() -> None:
    """Block until ``int(time.time())`` is past the second this is called in."""
    second, started = int(time.time()), time.monotonic()
    while int(time.time()) <= second:
        _check(started)
        time.sleep(max(_remaining(second), 0.001))


async def aleave_revoke_second() -> None:
    """``leave_revoke_second`` for async tests (the event loop keeps running)."""
    second, started = int(time.time()), time.monotonic()
    while int(time.time()) <= second:
        _check(started)
        await asyncio.sleep(max(_remaining(second), 0.001))
