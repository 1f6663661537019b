"""End-to-end fixtures: the whole local stack (Azurite, ACS emulator, issuer, function host)
started once per session on free ports, as ``python -m localdev.stack`` would start it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localdev.stack import Stack

from .helpers import StackClient


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole service on free ports; deleted users are purgeable at once (grace 0)."""
    # No scheduler: the purge runs only when a test fires it (never in the middle of another).
    with Stack(tmp_path_factory.mktemp("stack"), grace_minutes=0, use_func=False,
               timers=False) as running:
        yield running


@pytest.fixture(scope="session")
def client(stack: Stack) -> StackClient:
    return StackClient(stack)
