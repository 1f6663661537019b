"""Property-based API testing with Schemathesis against the OpenAPI document the running
app serves (GET /api/openapi.json through localdev.host): no 5xx, and every response
conforms to the document (status code, content type, body schema)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from tests.reliability.support import ADMIN

MAX_EXAMPLES = 25


def _hypothesis_compat() -> None:
    """hypothesis-jsonschema 0.23 (Schemathesis 3.x) drives ``many.more()``, which newer
    Hypothesis releases replaced by iteration; without it every object body fails to
    generate (AttributeError: 'many' object has no attribute 'more'). This re-adds
    ``more()`` on top of the iteration protocol's own steps."""
    from hypothesis.internal.conjecture import utils

    if hasattr(utils.many, "more"):
        return

    def more(self: Any) -> bool:
        if self._depth is None:
            self._depth = self.data.depth
        if self._in_element:
            self._finish_element()
        if not self._decide():
            return False
        self.count += 1
        self._in_element = True
        self._rejected = False
        return True

    utils.many.more = more


def load_schema(app: Any) -> Any:
    """The served document. Schemathesis's own generation of the bearer security parameter
    is switched off: it sends raw non-ASCII bytes in Authorization, which reaches the app
    as text with lone surrogates and is a known 500 (see
    test_auth_attacks::test_non_ascii_bytes_in_the_authorization_header_are_a_401);
    every mode below sends its own Authorization header, or none."""
    import schemathesis

    _hypothesis_compat()
    # The document is OpenAPI 3.1; Schemathesis 3.x supports it behind this switch.
    schemathesis.experimental.OPEN_API_3_1.enable()
    with urllib.request.urlopen(app.url("/api/openapi.json"), timeout=10) as response:
        document = json.load(response)
    from schemathesis.generation import GenerationConfig

    config = GenerationConfig(with_security_parameters=False)
    return schemathesis.from_dict(document, base_url=app.url("/api"), generation_config=config)


def run_operation(operation: Any, headers: dict[str, str],
                  host_answers: list[str] | None = None) -> list[str]:
    """Up to MAX_EXAMPLES deterministic cases; the failures, described.

    Answers that the host itself gives before the app runs (a URL no route matches, a
    header it cannot parse) are not the app's and not in its document: they carry none of
    the app's response headers. They are collected in ``host_answers`` and must be 4xx."""
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = (not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance)
    failures: dict[str, str] = {}

    @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def test(case: Any) -> None:
        response = case.call(headers=headers, timeout=30)
        if "X-Content-Type-Options" not in response.headers:
            assert 400 <= response.status_code < 500, (response.status_code, response.text)
            if host_answers is not None:
                host_answers.append(f"{operation.verbose_name} -> {response.status_code} "
                                    f"{response.request.url[:120]}")
            return
        try:
            case.validate_response(response, checks=checks)
        except AssertionError as exc:
            key = f"{operation.verbose_name} -> {response.status_code}"
            failures.setdefault(key, f"{key}: {str(exc).strip().splitlines()[0][:300]} "
                                     f"(url {response.request.url[:150]!r}, "
                                     f"body {response.text[:200]!r})")

    test()
    return list(failures.values())


@pytest.mark.parametrize("who", ["alice", "admin", "invalid", "anonymous"])
def test_api_conforms_to_its_openapi_document(http_app, issuer, who):
    schema = load_schema(http_app)
    tokens = {"alice": issuer.mint("st-alice"),
              "admin": issuer.mint("st-root", roles=[ADMIN]),
              "invalid": issuer.mint("st-alice")[:-8] + "AAAAAAAA"}
    headers = {"Authorization": f"Bearer {tokens[who]}"} if who in tokens else {}
    failures: list[str] = []
    host_answers: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        failures += run_operation(operation, headers, host_answers)
    assert operations >= 11
    assert len(host_answers) < operations * MAX_EXAMPLES // 4, host_answers
    assert not failures, "\n".join(failures)
