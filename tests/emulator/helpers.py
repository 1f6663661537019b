"""Raw HMAC-signed requests against the emulator (for the error paths the SDKs never take)."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import time
import urllib.parse
from typing import Any

import requests

from localdev.acs_emulator.auth import parse_conn

API = "2023-10-01"




def sign(
    key_b64: str, method: str, path_and_query: str, host: str, date: str, content_hash: str
) -> str:
    sts = f"{method}\n{path_and_query}\n{date};{host};{content_hash}"
    digest = hmac.new(base64.b64decode(key_b64), sts.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def body_hash(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def signed(
    emu: Any,
    method: str,
    path_and_query: str,
    body: bytes | dict[str, Any] | list[Any] | None = None,
    *,
    key: str | None = None,
    date: str | None = None,
    signed_host: str | None = None,
    signed_path: str | None = None,
    content_hash: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> requests.Response:
    """Send ``method path_and_query`` signed like the SDKs; every input can be falsified."""
    endpoint, real_key = parse_conn(emu.connection_string)
    host = urllib.parse.urlsplit(endpoint).netloc
    raw = json.dumps(body).encode() if isinstance(body, (dict, list)) else body or b""
    date = date or email.utils.formatdate(time.time(), usegmt=True)
    ch = body_hash(raw)
    sig = sign(
        key or real_key,
        method,
        signed_path if signed_path is not None else path_and_query,
        signed_host or host,
        date,
        ch,
    )
    h = {
        "Content-Type": "application/json",
        "x-ms-date": date,
        "x-ms-content-sha256": content_hash if content_hash is not None else ch,
        "Authorization": "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256"
        f"&Signature={sig}",
    }
    h.update(headers or {})
    return requests.request(
        method, endpoint + path_and_query, data=raw, headers=h, verify=emu.ca_file, timeout=timeout
    )


def create_identity(emu: Any) -> str:
    r = signed(emu, "POST", f"/identities?api-version={API}")
    assert r.status_code == 201, r.text
    return str(r.json()["identity"]["id"])


def quote_id(ident: str) -> str:
    return urllib.parse.quote(ident, safe="")


def decode_segment(seg: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))
    return data
