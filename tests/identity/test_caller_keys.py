"""Caller-token signing keys: a flood of unknown kids cannot hammer the IdP's JWKS."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.calls import call, request

pytestmark = pytest.mark.usefixtures("app_env")


async def test_unknown_kid_flood_costs_no_jwks_fetch(issuer, acs):
    before = issuer.stats()
    status, _, _ = await call("issue_token", request("POST", "token", token=issuer.mint("kid-ok")))
    assert status == 200
    warm = issuer.stats()
    assert warm["jwksRequests"] - before["jwksRequests"] == 1  # the worker's first fetch
    forged = [issuer.mint("victim", headers={"kid": uuid.uuid4().hex}) for _ in range(50)]
    results = await asyncio.gather(*(
        call("issue_token", request("POST", "token", token=t)) for t in forged))
    assert {status for status, _, _ in results} == {401}
    after = issuer.stats()
    # Within 30 s of the last fetch, unknown kids are refused without fetching again.
    assert after["jwksRequests"] == warm["jwksRequests"]
    assert after["discoveryRequests"] == warm["discoveryRequests"]
    assert acs.stats()["requests"]["createIdentity"] == 1
