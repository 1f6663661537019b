"""Throttling (429 + Retry-After) and injected faults (status, reset, hang, latency)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import requests
from azure.communication.identity import CommunicationIdentityClient
from azure.core.exceptions import (
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from localdev.acs_emulator import EmulatorError, EmulatorProcess

from .helpers import API, create_identity, quote_id, signed


def client(emu: EmulatorProcess, **kw: object) -> CommunicationIdentityClient:
    return CommunicationIdentityClient.from_connection_string(
        emu.connection_string, connection_verify=emu.ca_file, **kw
    )


# ---------------------------------------------------------------------------- throttling
@pytest.fixture
def tiny(emulator_factory: Callable[..., EmulatorProcess]) -> EmulatorProcess:
    # limits: 1000*0.002 = 2 creates/issues, 500*0.002 -> 1 revoke/delete/exchange per 2 s window
    return emulator_factory(rate_scale=0.002, extra_args=("--throttle-window", "2"))


def test_limits_scaled(tiny: EmulatorProcess) -> None:
    assert tiny.stats()["limits"] == {
        "createIdentity": 2,
        "issueAccessToken": 2,
        "deleteIdentity": 1,
        "revokeAccessTokens": 1,
        "exchangeTeamsUserAccessToken": 1,
    }


def test_raw_429_with_retry_after(tiny: EmulatorProcess) -> None:
    assert signed(tiny, "POST", f"/identities?api-version={API}").status_code == 201
    assert signed(tiny, "POST", f"/identities?api-version={API}").status_code == 201
    r = signed(
        tiny,
        "POST",
        f"/identities?api-version={API}",
        {"createTokenWithScopes": ["chat"]},
        headers={"x-ms-client-request-id": "t-1"},
    )
    assert r.status_code == 429
    retry_after = int(r.headers["Retry-After"])
    assert 1 <= retry_after <= 2
    assert r.json()["error"]["code"] == "TooManyRequests"
    assert r.headers["x-ms-client-request-id"] == "t-1"
    assert "MS-CV" in r.headers
    stats = tiny.stats()
    assert stats["throttled"]["createIdentity"] == 1
    assert stats["requests"]["createIdentity"] == 3  # counted whatever the outcome
    assert stats["identities"] == 2  # the throttled request created nothing

    # other operations have their own windows
    ident = tiny.identities()[0]
    r = signed(tiny, "POST", f"/identities/{quote_id(ident)}/:revokeAccessTokens?api-version={API}")
    assert r.status_code == 204
    r = signed(tiny, "POST", f"/identities/{quote_id(ident)}/:revokeAccessTokens?api-version={API}")
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1


def test_sdk_raises_429_without_retries_then_succeeds_with_retries(tiny: EmulatorProcess) -> None:
    strict = client(tiny, retry_total=0)
    strict.create_user()
    strict.create_user()
    with pytest.raises(HttpResponseError) as ei:
        strict.create_user()
    assert ei.value.status_code == 429
    assert ei.value.error.code == "TooManyRequests"
    # The default retry policy honours Retry-After and gets through once the window ends.
    user = client(tiny).create_user()
    assert user.properties["id"] in tiny.identities()
    assert tiny.stats()["throttled"]["createIdentity"] >= 2


def test_reset_clears_throttle_windows(tiny: EmulatorProcess) -> None:
    for _ in range(2):
        assert signed(tiny, "POST", f"/identities?api-version={API}").status_code == 201
    assert signed(tiny, "POST", f"/identities?api-version={API}").status_code == 429
    tiny.reset()
    assert signed(tiny, "POST", f"/identities?api-version={API}").status_code == 201
    assert tiny.stats()["requests"]["createIdentity"] == 1


# ---------------------------------------------------------------------------- faults
def test_fault_500_changes_nothing(emu: EmulatorProcess) -> None:
    emu.set_faults(fault={"operation": "createIdentity", "status": 500, "count": 1})
    with pytest.raises(HttpResponseError) as ei:
        client(emu, retry_total=0).create_user()
    assert ei.value.status_code == 500
    assert emu.identities() == []
    assert emu.stats()["faulted"]["createIdentity"] == 1
    assert emu.stats()["requests"]["createIdentity"] == 1
    client(emu, retry_total=0).create_user()  # fault consumed
    assert len(emu.identities()) == 1


def test_fault_503_only_for_its_operation(emu: EmulatorProcess) -> None:
    ident = create_identity(emu)
    emu.set_faults(fault={"operation": "deleteIdentity", "status": 503, "count": 1})
    path = f"/identities/{quote_id(ident)}/:issueAccessToken?api-version={API}"
    assert signed(emu, "POST", path, {"scopes": ["chat"]}).status_code == 200
    r = signed(emu, "DELETE", f"/identities/{quote_id(ident)}?api-version={API}")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "ServiceUnavailable"
    assert emu.identities() == [ident]
    assert (
        signed(emu, "DELETE", f"/identities/{quote_id(ident)}?api-version={API}").status_code == 204
    )


def test_fault_429_retry_after_honoured_by_sdk(emu: EmulatorProcess) -> None:
    emu.set_faults(fault={"operation": "*", "status": 429, "count": 1, "retryAfterSeconds": 1})
    seen: list[int] = []
    c = client(emu)
    started = time.monotonic()
    user, _ = c.create_user_and_token(
        ["chat"], raw_response_hook=lambda r: seen.append(r.http_response.status_code)
    )
    assert time.monotonic() - started >= 1.0  # the SDK waited Retry-After
    assert seen[-1] == 201
    assert emu.identities() == [user.properties["id"]]
    assert emu.stats()["faulted"]["createIdentity"] == 1


def test_fault_queue_in_order_and_raw_retry_after(emu: EmulatorProcess) -> None:
    emu.set_faults(
        fault={"operation": "createIdentity", "status": 429, "count": 1, "retryAfterSeconds": 7}
    )
    emu.set_faults(fault=[{"operation": "*", "status": 500, "count": 2}])
    r1 = signed(emu, "POST", f"/identities?api-version={API}")
    assert r1.status_code == 429
    assert r1.headers["Retry-After"] == "7"
    assert [
        signed(emu, "POST", f"/identities?api-version={API}").status_code for _ in range(3)
    ] == [
        500,
        500,
        201,
    ]


def test_sdk_retries_500_then_succeeds(emu: EmulatorProcess) -> None:
    emu.set_faults(fault={"operation": "issueAccessToken", "status": 500, "count": 2})
    c = client(emu, retry_backoff_factor=0.01)
    user = c.create_user()
    tok = c.get_token(user, ["chat"])
    assert emu.validate(tok.token)["valid"] is True
    assert emu.stats()["faulted"]["issueAccessToken"] == 2


def test_fault_reset_drops_connection(emu: EmulatorProcess) -> None:
    c = client(emu, retry_total=0)
    user = c.create_user()
    emu.set_faults(fault={"operation": "deleteIdentity", "mode": "reset", "count": 1})
    with pytest.raises((ServiceRequestError, ServiceResponseError)):
        c.delete_user(user)
    assert emu.identities() == [user.properties["id"]]  # not deleted
    c.delete_user(user)
    assert emu.identities() == []


def test_fault_hang_client_times_out(emu: EmulatorProcess) -> None:
    c = client(emu, retry_total=0)
    user = c.create_user()
    emu.set_faults(fault={"operation": "revokeAccessTokens", "mode": "hang", "count": 1})
    tok = c.get_token(user, ["chat"])
    with pytest.raises(ServiceResponseError):
        c.revoke_tokens(user, read_timeout=0.5)
    assert emu.validate(tok.token)["valid"] is True  # nothing revoked
    c.revoke_tokens(user)
    assert emu.validate(tok.token)["reason"] == "revoked"


def test_fault_hang_released_by_reset(emu: EmulatorProcess) -> None:
    emu.set_faults(fault={"operation": "*", "mode": "hang", "count": 1})
    outcome: list[BaseException | int] = []

    def call() -> None:
        try:
            outcome.append(
                signed(emu, "POST", f"/identities?api-version={API}", timeout=60).status_code
            )
        except requests.RequestException as exc:
            outcome.append(exc)

    t = threading.Thread(target=call)
    t.start()
    deadline = time.monotonic() + 10
    while emu.stats()["hanging"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emu.stats()["hanging"] == 1
    emu.reset()
    t.join(10)
    assert not t.is_alive()
    assert isinstance(outcome[0], requests.ConnectionError)
    assert emu.identities() == []


def test_latency_injection(emu: EmulatorProcess) -> None:
    emu.set_faults(latency_ms=300)
    assert emu.stats()["latencyMs"] == 300
    started = time.monotonic()
    assert signed(emu, "POST", f"/identities?api-version={API}").status_code == 201
    assert time.monotonic() - started >= 0.3
    emu.set_faults(latency_ms=0)
    assert emu.stats()["latencyMs"] == 0


def test_clear_faults(emu: EmulatorProcess) -> None:
    emu.set_faults(latency_ms=50, fault={"operation": "*", "status": 500, "count": 5})
    assert emu.control("GET", "faults")["faults"][0]["count"] == 5
    emu.clear_faults()
    assert emu.control("GET", "faults") == {"latencyMs": 0, "faults": []}
    assert signed(emu, "POST", f"/identities?api-version={API}").status_code == 201


@pytest.mark.parametrize(
    "fault",
    [
        {"operation": "nope", "status": 500},
        {"operation": "*", "status": 404},
        {"operation": "*", "mode": "explode"},
        {"operation": "*", "status": 500, "count": 0},
    ],
)
def test_invalid_fault_rejected(emu: EmulatorProcess, fault: dict[str, object]) -> None:
    with pytest.raises(EmulatorError, match="400"):
        emu.set_faults(fault=fault)
    assert emu.control("GET", "faults")["faults"] == []


def test_faults_do_not_touch_control_endpoints(emu: EmulatorProcess) -> None:
    emu.set_faults(latency_ms=5000, fault={"operation": "*", "mode": "reset", "count": 1})
    for _ in range(3):  # control calls are neither delayed nor faulted
        assert emu.identities() == []
        assert emu.validate("x.y.z")["valid"] is False
    assert emu.stats()["pendingFaults"] == [{"operation": "*", "count": 1, "mode": "reset"}]
    emu.set_faults(latency_ms=0)
    with pytest.raises(requests.ConnectionError):
        signed(emu, "POST", f"/identities?api-version={API}")
    assert emu.stats()["pendingFaults"] == []
    assert emu.identities() == []
