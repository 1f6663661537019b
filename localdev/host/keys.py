"""Host keys and HTTP authorization levels, as the Functions host applies them.

Keys file (JSON)::

    {
      "masterKey": "...",                       # admin level, also a host key
      "functionKeys": {"default": "..."},       # host-level function keys
      "functions": {"NAME": {"default": "..."}} # optional per-function keys
    }

A request presents a key in the ``x-functions-key`` header or the ``code``
query parameter (header first).  ``anonymous`` needs nothing; ``function``
accepts a key of that function, any host function key or the master key;
``admin`` accepts only the master key.  Otherwise: 401 with an empty body.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from localdev.files import write_json_atomic

__all__ = ["AuthLevel", "HostKeys", "authorize", "load_or_create_keys", "request_key"]


class AuthLevel:
    ANONYMOUS = "anonymous"
    FUNCTION = "function"
    ADMIN = "admin"

    @staticmethod
    def normalize(value: object) -> str:
        text = str(value or AuthLevel.FUNCTION).lower()
        if text not in (AuthLevel.ANONYMOUS, AuthLevel.FUNCTION, AuthLevel.ADMIN):
            raise ValueError(f"unknown authLevel {value!r}")
        return text


def _new_key() -> str:
    # The host generates 40 random bytes, base64url, padded with '=='.
    return base64.urlsafe_b64encode(secrets.token_bytes(40)).decode().rstrip("=") + "=="


@dataclass
class HostKeys:
    master_key: str
    function_keys: dict[str, str] = field(default_factory=dict)
    per_function: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def generate(cls) -> HostKeys:
        return cls(master_key=_new_key(), function_keys={"default": _new_key()})

    @property
    def default_function_key(self) -> str:
        if "default" in self.function_keys:
            return self.function_keys["default"]
        return next(iter(self.function_keys.values()), self.master_key)

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "masterKey": self.master_key,
            "functionKeys": dict(self.function_keys),
        }
        if self.per_function:
            data["functions"] = {k: dict(v) for k, v in self.per_function.items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> HostKeys:
        master = data.get("masterKey")
        if not isinstance(master, str) or not master:
            raise ValueError("keys file: 'masterKey' must be a non-empty string")
        fkeys = data.get("functionKeys") or {}
        if not isinstance(fkeys, dict):
            raise ValueError("keys file: 'functionKeys' must be an object")
        per = data.get("functions") or {}
        if not isinstance(per, dict):
            raise ValueError("keys file: 'functions' must be an object")
        return cls(
            master_key=master,
            function_keys={str(k): str(v) for k, v in fkeys.items()},
            per_function={
                str(n): {str(k): str(v) for k, v in dict(ks).items()} for n, ks in per.items()
            },
        )

    def level_of(self, key: str | None, function_name: str | None) -> str | None:
        """The auth level a key grants ('admin', 'function') or None."""
        if not key:
            return None
        if _eq(key, self.master_key):
            return AuthLevel.ADMIN
        for v in self.function_keys.values():
            if _eq(key, v):
                return AuthLevel.FUNCTION
        if function_name is not None:
            for name, ks in self.per_function.items():
                if name.lower() == function_name.lower():
                    for v in ks.values():
                        if _eq(key, v):
                            return AuthLevel.FUNCTION
        return None


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def load_or_create_keys(path: str | os.PathLike[str]) -> HostKeys:
    """Read the keys file, or create it (mode 0600) with random keys."""
    p = Path(path)
    if p.exists():
        return HostKeys.from_json(json.loads(p.read_text(encoding="utf-8")))
    keys = HostKeys.generate()
    p.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(p, keys.to_json(), private=True)
    return keys


def request_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The key a request presents: x-functions-key header, else ?code=."""
    key = headers.get("x-functions-key")
    if key:
        return key
    return query.get("code") or None


def authorize(required: str, keys: HostKeys, key: str | None, function_name: str) -> bool:
    if required == AuthLevel.ANONYMOUS:
        return True
    granted = keys.level_of(key, function_name)
    if granted is None:
        return False
    if required == AuthLevel.ADMIN:
        return granted == AuthLevel.ADMIN
    return True
