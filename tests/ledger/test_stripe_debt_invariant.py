"""Invariant 3 with claw-backs (issue 12, case 5): debt is allowed down to exactly what
claw-backs took, not forever once a wallet had one."""
from __future__ import annotations

import pytest

from ledger import operations as ops
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.invariants import check
from ledger.models import STRIPE_CLEARING

pytestmark = pytest.mark.integration


def test_unaudited_debt_beyond_the_claw_back_is_a_violation(new_database) -> None:
    engine = make_engine(new_database())
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as s:
        ops.credit_topup(s, user_id="debt-1", amount=500, op_key="t:debt-1", ref="cs_debt_1")
        ops.transfer(s, user_id="debt-1", amount=-400, counter="revenue:gpu", kind=ops.TxKind.CAPTURE,
                     op_key="spend:debt-1")
        ops.transfer(s, user_id="debt-1", amount=-500, counter=STRIPE_CLEARING, kind=ops.TxKind.CLAWBACK,
                     op_key="refund:re_debt_1", ref="re_debt_1", allow_debt=True)
    with transaction(sessions) as s:  # -400: within the 500 clawed back
        assert [v for v in check(s) if v.invariant == 3] == []
    with transaction(sessions) as s:  # an unaudited debit into more debt
        ops.transfer(s, user_id="debt-1", amount=-300, counter="revenue:gpu", kind=ops.TxKind.CAPTURE,
                     op_key="spend2:debt-1", allow_debt=True)
    with transaction(sessions) as s:
        found = [v for v in check(s) if v.invariant == 3]
    assert [(v.subject, v.detail) for v in found] == [
        ("wallet debt-1", "available -700 < 0 beyond the 500 credits clawed back")]
    engine.dispose()
