"""Operator adjustments: one ``adjust`` transaction against the ``adjustments`` account
and its audit row (operator, reason, operation key) in the caller's DB transaction."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import operations as ops
from ledger.errors import IdempotencyConflict
from ledger.models import ADJUSTMENTS, Adjustment, utcnow


@dataclass(frozen=True, slots=True)
class Adjusted:
    """The adjustment as recorded (the first one when ``replayed``); credits."""

    transaction_id: int
    amount: int
    operator: str
    reason: str
    op_key: str
    replayed: bool


def adjust(s: Session, *, user_id: str, amount: int, reason: str, operator: str, op_key: str,
           allow_debt: bool = False) -> Adjusted:
    """Credit (``amount`` > 0) or debit (< 0) ``user_id``'s wallet by ``amount`` credits
    and audit who and why. A debit beyond ``available`` needs ``allow_debt``.

    ``op_key`` is unique forever: replaying it returns the first adjustment. Raises
    ``InsufficientFunds``, ``IdempotencyConflict`` (key used with another amount, user
    or for a non-adjustment), ``ValueError`` (amount 0, empty reason or operator).
    """
    if not reason.strip() or not operator.strip():
        raise ValueError("an adjustment needs a reason and an operator")
    posted = ops.transfer(s, user_id=user_id, amount=amount, counter=ADJUSTMENTS,
                          kind=ops.TxKind.ADJUST, op_key=op_key, allow_debt=allow_debt)
    if posted.replayed:
        audit = s.scalars(select(Adjustment).where(Adjustment.op_key == op_key)).one_or_none()
        if audit is None:
            raise IdempotencyConflict(f"operation key {op_key} belongs to another operation")
        return Adjusted(audit.transaction_id, audit.amount, audit.operator, audit.reason,
                        op_key, replayed=True)
    s.add(Adjustment(transaction_id=posted.transaction_id, op_key=op_key, user_id=user_id,
                     amount=amount, allow_debt=allow_debt, operator=operator[:100],
                     reason=reason, created_at=utcnow()))
    s.flush()
    return Adjusted(posted.transaction_id, amount, operator[:100], reason, op_key, replayed=False)
