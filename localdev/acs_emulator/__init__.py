"""Offline emulator of the Azure Communication Services Identity data plane.

Run it with ``python -m localdev.acs_emulator --data-dir DIR``; drive it from
tests with :class:`EmulatorProcess`.
"""

from .process import EmulatorError, EmulatorProcess

__all__ = ["EmulatorError", "EmulatorProcess"]
