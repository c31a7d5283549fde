"""`make demo`'s scenario as a test, against the whole stack over HTTP."""
from __future__ import annotations

import pytest

from gpubill.demo import run_scenario

pytestmark = pytest.mark.e2e


def test_demo_scenario(stack, invariants) -> None:
    lines: list[str] = []
    outcome = run_scenario(stack.receiver_url, stack.settings, lines.append)
    assert outcome.ok, "\n".join(lines + ["FAILED: " + f for f in outcome.failures])
    assert any("ledger invariants: 0 violation(s)" in line for line in lines)
    # The top-up went the real way: a Checkout Session on the Stripe stand-in, paid
    # there, its signed webhooks (each twice) credited once.
    assert any("POST /v1/topups → 201 session cs_test_" in line for line in lines), lines
    assert any("checkout.session.completed" in line and "[200, 200" in line for line in lines), lines
    invariants()
