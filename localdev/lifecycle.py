"""The context-manager protocol shared by every local component (Azurite, the emulator,
the issuer, the stack): ``with X(...) as x`` starts it and always stops it."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T", bound="Managed")


class Managed:
    def start(self: T) -> T:
        raise NotImplementedError

    def stop(self) -> Any:
        raise NotImplementedError

    def __enter__(self: T) -> T:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
