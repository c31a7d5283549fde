"""Schemathesis against the service's own ``/openapi.json``: every operation, with
generated inputs, authenticated as the app — never a 5xx, and every answer conforms to
the spec (status code documented, content type, documented headers, response body
schema).

Two kinds of input per operation (schemathesis generation modes):

- positive: inputs the spec allows;
- negative: inputs the spec forbids (one or more of path, query, headers, body broken) —
  these must also be *refused* (``negative_data_rejection``: a 4xx such as 400, 401, 404,
  422; not a 2xx, and not a 402 that means the input was taken for a valid job). A spec
  looser or stricter than the code shows up here (issue 13 findings: docs/proof.md).
  A case whose ``Authorization`` is broken (missing, or not ``Bearer …``) is sent as
  generated; every other case with the app's key, so what is refused is the body, the
  query, the path or another header (``Idempotency-Key``), not the key.

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
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi import checks

pytestmark = pytest.mark.integration
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}  # per operation
CHECKS = [checks.response_schema_conformance, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_headers_conformance]


def _auth_broken(case) -> bool:
    components = case.meta.components if case.meta is not None else {}
    part = components.get(ParameterLocation.HEADER)
    headers = case.headers or {}
    return (part is not None and part.mode == GenerationMode.NEGATIVE
            and not str(headers.get("Authorization", "")).startswith("Bearer "))


def _fuzz(op, mode, base_url: str, auth: dict[str, str], checks_for_mode: list, sent: Counter[str]) -> None:
    """Generated requests of ``mode`` for one operation, counted in ``sent``."""
    @settings(max_examples=EXAMPLES[mode], deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode))
    def conforms(case) -> None:
        sent[op.label] += 1
        headers = None if mode == GenerationMode.NEGATIVE and _auth_broken(case) else auth
        r = case.call(base_url=base_url, headers=headers, timeout=20)
        assert r.status_code < 500, f"{op.label}: {r.status_code} {r.text[:300]}"
        case.validate_response(r, checks=checks_for_mode)

    conforms()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_operation_answers_5xx_or_off_spec(stack, mode) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.receiver_url}/openapi.json")
    auth = {"Authorization": f"Bearer {stack.settings.api_keys[0].get_secret_value()}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5, [op.label for op in operations]
    checks_for_mode = CHECKS + ([checks.negative_data_rejection] if mode == GenerationMode.NEGATIVE else [])
    sent: Counter[str] = Counter()
    nothing_to_break: list[str] = []
    for op in operations:
        if mode == GenerationMode.NEGATIVE and not ({"parameters", "requestBody"} & set(op.definition.raw)):
            nothing_to_break.append(op.label)  # no input at all: nothing can be invalid
            continue

        try:
            _fuzz(op, mode, stack.receiver_url, auth, checks_for_mode, sent)
        except Unsatisfiable:  # negative: every input the spec can express is valid (a free string)
            assert mode == GenerationMode.NEGATIVE, op.label
            nothing_to_break.append(op.label)
    print(f"\n{mode.value}: requests per operation:", ", ".join(f"{label} {n}" for label, n in sent.items()),
          f"(total {sum(sent.values())})", f"; no invalid input possible: {nothing_to_break}" * bool(nothing_to_break))
    if mode == GenerationMode.NEGATIVE:  # every operation that takes input was fed invalid input
        assert {"POST /v1/jobs", "POST /v1/quotes", "POST /v1/topups", "POST /webhooks/stripe",
                "GET /v1/wallets/{user_id}/entries"} <= {label for label, n in sent.items() if n}
