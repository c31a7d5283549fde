"""Schemathesis against the service's own ``/openapi.json``: every operation, with
generated inputs, authenticated as the app — never a 5xx.

The generated requests hit the real receiver of the session's stack (real database,
broker and stand-ins), so a 5xx anywhere behind an operation fails the test. (The
schema is loaded inside the test, not by ``schemathesis.pytest``, whose fixture
loader does not run on pytest 9.)
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.integration
EXAMPLES_PER_OPERATION = 40


def test_no_operation_answers_5xx(stack) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.receiver_url}/openapi.json")
    auth = {"Authorization": f"Bearer {stack.settings.api_keys[0].get_secret_value()}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5, [op.label for op in operations]
    print("operations:", ", ".join(op.label for op in operations))
    for op in operations:
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def no_5xx(case) -> None:  # type: ignore[no-untyped-def]
            r = case.call(base_url=stack.receiver_url, headers=auth, timeout=20)
            assert r.status_code < 500, f"{op.label}: {r.status_code} {r.text[:300]}"

        no_5xx()
