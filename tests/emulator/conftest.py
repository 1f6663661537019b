"""Fixtures for the emulator tests: a shared emulator and a factory for special ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localdev.acs_emulator import EmulatorProcess


@pytest.fixture(scope="session")
def acs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """One emulator for the whole session (default limits, no JWKS, in-memory state).

    Other test packages can use it too; call ``acs_emulator.reset()`` when a
    test needs a clean slate.
    """
    with EmulatorProcess(tmp_path_factory.mktemp("acs-emulator")) as emu:
        yield emu


@pytest.fixture
def emu(acs_emulator: EmulatorProcess) -> Iterator[EmulatorProcess]:
    """The shared emulator, reset before the test (identities, counters, faults, windows)."""
    acs_emulator.reset()
    yield acs_emulator
    acs_emulator.clear_faults()


@pytest.fixture
def emulator_factory(tmp_path: Path) -> Iterator[Callable[..., EmulatorProcess]]:
    """``emulator_factory(rate_scale=..., ...)``: a dedicated emulator, stopped after the test."""
    started: list[EmulatorProcess] = []

    def make(**kwargs: Any) -> EmulatorProcess:
        data_dir = kwargs.pop("data_dir", tmp_path / f"emu{len(started)}")
        emu = EmulatorProcess(data_dir, **kwargs)
        started.append(emu)
        return emu.start()

    yield make
    for e in started:
        e.stop()
