"""Schemathesis against the service's own ``/openapi.json``: every operation, with
generated inputs, authenticated as the app — never a 5xx, and every answer conforms to
the spec (status code documented, content type, response body schema).

The generated requests hit the real receiver of the session's stack (real database,
broker and stand-ins), so a 5xx anywhere behind an operation fails the test. (The
schema is loaded inside the test, not by ``schemathesis.pytest``, whose fixture
loader does not run on pytest 9.) The number of requests per operation is printed.
"""
from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi import checks

pytestmark = pytest.mark.integration
EXAMPLES_PER_OPERATION = 40
CHECKS = [checks.response_schema_conformance, checks.status_code_conformance,
          checks.content_type_conformance]


def _fuzz(op, base_url: str, auth: dict[str, str], sent: Counter[str]) -> None:
    """Generated requests for one operation; counts them in ``sent``."""
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy())
    def conforms(case) -> None:
        sent[op.label] += 1
        r = case.call(base_url=base_url, headers=auth, timeout=20)
        assert r.status_code < 500, f"{op.label}: {r.status_code} {r.text[:300]}"
        case.validate_response(r, checks=CHECKS)

    conforms()


def test_no_operation_answers_5xx_or_off_spec(stack) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.receiver_url}/openapi.json")
    auth = {"Authorization": f"Bearer {stack.settings.api_keys[0].get_secret_value()}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5, [op.label for op in operations]
    sent: Counter[str] = Counter()
    for op in operations:
        _fuzz(op, stack.receiver_url, auth, sent)
    print("\nrequests per operation:", ", ".join(f"{label} {n}" for label, n in sent.items()),
          f"(total {sum(sent.values())})")
