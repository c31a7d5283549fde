"""``ledger.entries.page`` on the real database: every entry kind with its signed amount,
operation key and reference, newest first, and cursor pages that neither skip nor repeat
entries — including entries written in the same instant."""
from __future__ import annotations

import secrets
from datetime import timedelta

import pytest

from ledger import entries, operations as ops
from ledger.db import transaction
from ledger.models import ADJUSTMENTS, STRIPE_CLEARING, utcnow

pytestmark = pytest.mark.integration


def test_every_entry_kind_newest_first(sessions, invariants) -> None:
    user = f"e-{secrets.token_hex(4)}"
    later = utcnow() + timedelta(minutes=5)
    with transaction(sessions) as s:  # one transaction: many entries share timestamps
        ops.credit_topup(s, user_id=user, amount=500, op_key=f"topup:cs_{user}", ref=f"cs_{user}")
        ops.transfer(s, user_id=user, amount=1000, counter=STRIPE_CLEARING, kind=ops.TxKind.GRANT,
                     op_key=f"invoice:in_{user}", ref=f"in_{user}")
        ops.transfer(s, user_id=user, amount=-100, counter=STRIPE_CLEARING, kind=ops.TxKind.CLAWBACK,
                     op_key=f"refund:re_{user}", ref=f"re_{user}", allow_debt=True)
        ops.transfer(s, user_id=user, amount=100, counter=STRIPE_CLEARING, kind=ops.TxKind.RESTORE,
                     op_key=f"refund:re_{user}:restore", ref=f"re_{user}")
        ops.transfer(s, user_id=user, amount=-7, counter=ADJUSTMENTS, kind=ops.TxKind.ADJUST,
                     op_key=f"adjust:{user}:1")
        captured = ops.place_hold(s, user_id=user, amount=30, op_key=f"job:j1{user}:hold",
                                  expires_at=later, job_id=f"j1{user}")
        ops.capture(s, hold_id=captured.hold_id, amount=12, op_key=f"job:j1{user}:capture", ref=f"j1{user}")
        released = ops.place_hold(s, user_id=user, amount=20, op_key=f"job:j2{user}:hold",
                                  expires_at=later, job_id=f"j2{user}")
        ops.release(s, hold_id=released.hold_id, op_key=f"job:j2{user}:release")
        expired = ops.place_hold(s, user_id=user, amount=10, op_key=f"job:j3{user}:hold",
                                 expires_at=later, job_id=f"j3{user}")
        ops.release(s, hold_id=expired.hold_id, op_key=f"job:j3{user}:expire", expired=True)
    with transaction(sessions) as s:
        full = entries.page(s, user, limit=200)
    assert full.next_cursor is None
    got = {(e.kind, e.amount, e.op_key) for e in full.entries}
    assert got == {
        ("topup", 500, f"topup:cs_{user}"), ("grant", 1000, f"invoice:in_{user}"),
        ("clawback", -100, f"refund:re_{user}"), ("restore", 100, f"refund:re_{user}:restore"),
        ("adjust", -7, f"adjust:{user}:1"),
        ("hold", 30, f"job:j1{user}:hold"), ("capture", -12, f"job:j1{user}:capture"),
        ("hold", 20, f"job:j2{user}:hold"), ("release", 20, f"job:j2{user}:release"),
        ("hold", 10, f"job:j3{user}:hold"), ("expire", 10, f"job:j3{user}:expire"),
    }
    stamps = [e.created_at for e in full.entries]
    assert stamps == sorted(stamps, reverse=True)
    assert len({e.id for e in full.entries}) == len(full.entries)
    money = sum(e.amount for e in full.entries if e.kind not in ("hold", "release", "expire"))
    assert money == 500 + 1000 - 100 + 100 - 7 - 12
    # One entry per page: the same sequence, nothing skipped or repeated.
    seen, cursor = [], None
    with transaction(sessions) as s:
        while True:
            page = entries.page(s, user, cursor=cursor, limit=1)
            seen += page.entries
            if (cursor := page.next_cursor) is None:
                break
    assert seen == full.entries
    invariants()


@pytest.mark.parametrize("cursor", [
    "", "!!", "bm90IGpzb24", "WzEsMiwzXQ",
    "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiw3LDFd",  # ["2026-01-01T00:00:00",7,1]: no such kind of entry
    "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIix0cnVlLDFd",  # [..., true, 1]
    "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwxLCJ4Il0",  # [..., 1, "x"]
])
def test_bad_cursor_raises_value_error(sessions, cursor) -> None:
    with transaction(sessions) as s, pytest.raises(ValueError):
        entries.page(s, "anyone", cursor=cursor or "=")
