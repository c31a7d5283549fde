"""The ledger invariants of design.md, checked over the whole database.

``check(session)`` returns every violation found (empty list = consistent). It reads
only; run it in its own transaction. Used by ``gpubill reconcile``, the demo and the
tests after every step.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from ledger.models import (
    Hold, HoldStatus, Job, JobStatus, LedgerTransaction, Posting, Topup, Wallet,
)


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant: ``invariant`` is its number in design.md (1–6)."""

    invariant: int
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.subject}: {self.detail}"


def _balanced_transactions(s: Session) -> list[Violation]:
    legs = (select(LedgerTransaction.id, func.count(Posting.id), func.coalesce(func.sum(Posting.amount), 0))
            .outerjoin(Posting, Posting.transaction_id == LedgerTransaction.id)
            .group_by(LedgerTransaction.id))
    return [Violation(1, f"transaction {tx}", f"{n} postings summing to {total}")
            for tx, n, total in s.execute(legs) if n < 2 or total != 0]


def _wallet_caches(s: Session) -> list[Violation]:
    out: list[Violation] = []
    posted = (select(Posting.account_id, func.sum(Posting.amount).label("total"))
              .group_by(Posting.account_id).subquery())
    held = (select(Hold.user_id, func.sum(Hold.amount).label("total"))
            .where(Hold.status == HoldStatus.OPEN).group_by(Hold.user_id).subquery())
    rows = s.execute(
        select(Wallet.user_id, Wallet.balance, Wallet.held,
               func.coalesce(posted.c.total, 0), func.coalesce(held.c.total, 0))
        .outerjoin(posted, posted.c.account_id == Wallet.account_id)
        .outerjoin(held, held.c.user_id == Wallet.user_id))
    for user, balance, held_cache, posted_sum, open_sum in rows:
        if balance != posted_sum:
            out.append(Violation(2, f"wallet {user}", f"balance {balance} != postings {posted_sum}"))
        if held_cache != open_sum:
            out.append(Violation(2, f"wallet {user}", f"held {held_cache} != open holds {open_sum}"))
    return out


def _available(s: Session) -> list[Violation]:
    clawed = select(LedgerTransaction.user_id).where(LedgerTransaction.kind == "clawback")
    rows = s.execute(select(Wallet.user_id, Wallet.balance, Wallet.held).where(
        Wallet.balance - Wallet.held < 0, Wallet.user_id.not_in(clawed)))
    return [Violation(3, f"wallet {u}", f"available {b - h} < 0 without a claw-back")
            for u, b, h in rows]


def _holds(s: Session) -> list[Violation]:
    out: list[Violation] = []
    bad = s.execute(select(Hold.id, Hold.status, Hold.amount, Hold.captured, Hold.close_key).where(or_(
        Hold.status.not_in(HoldStatus.ALL),
        Hold.captured > Hold.amount, Hold.captured < 0,
        and_(Hold.status != HoldStatus.CAPTURED, Hold.captured != 0),
        and_(Hold.status == HoldStatus.OPEN, Hold.close_key.is_not(None)),
        and_(Hold.status != HoldStatus.OPEN, Hold.close_key.is_(None)),
    )))
    out += [Violation(4, f"hold {i}", f"status {st}, amount {a}, captured {c}, closed by {k}")
            for i, st, a, c, k in bad]
    # A captured hold has exactly the capture transaction its close key names.
    mismatched = s.execute(
        select(Hold.id, Hold.captured, LedgerTransaction.amount)
        .outerjoin(LedgerTransaction, LedgerTransaction.op_key == Hold.close_key)
        .where(Hold.status == HoldStatus.CAPTURED,
               or_(LedgerTransaction.id.is_(None), LedgerTransaction.amount != Hold.captured)))
    out += [Violation(4, f"hold {i}", f"captured {c} but capture transaction says {t}")
            for i, c, t in mismatched]
    return out


def _at_most_once(s: Session) -> list[Violation]:
    out: list[Violation] = []
    for kind, what in (("topup", "checkout session"), ("capture", "job")):
        dup = s.execute(select(LedgerTransaction.ref, func.count()).where(
            LedgerTransaction.kind == kind, LedgerTransaction.ref.is_not(None))
            .group_by(LedgerTransaction.ref).having(func.count() > 1))
        out += [Violation(5, f"{what} {ref}", f"{n} {kind} transactions") for ref, n in dup]
    credited = s.execute(select(Topup.checkout_session_id).where(Topup.status == "credited")
                         .where(Topup.checkout_session_id.not_in(
                             select(LedgerTransaction.ref).where(LedgerTransaction.kind == "topup"))))
    out += [Violation(5, f"checkout session {sid}", "marked credited without a top-up transaction")
            for (sid,) in credited]
    charged = s.execute(
        select(Job.id, Job.charge, func.coalesce(func.sum(LedgerTransaction.amount), 0))
        .outerjoin(LedgerTransaction, and_(LedgerTransaction.kind == "capture",
                                           LedgerTransaction.ref == Job.id))
        .group_by(Job.id, Job.charge))
    out += [Violation(5, f"job {j}", f"receipt charge {c} != captured {t}")
            for j, c, t in charged if (c or 0) != t]
    return out


def _terminal_jobs(s: Session) -> list[Violation]:
    rows = s.execute(select(Job.id, Job.status, Hold.id).join(Hold, Hold.job_id == Job.id)
                     .where(Job.status.in_(JobStatus.TERMINAL), Hold.status == HoldStatus.OPEN))
    return [Violation(6, f"job {j}", f"{st} but hold {h} is still open") for j, st, h in rows]


CHECKS = (_balanced_transactions, _wallet_caches, _available, _holds, _at_most_once, _terminal_jobs)


def check(session: Session) -> list[Violation]:
    """Every violation of design.md invariants 1–6 in the ledger, in invariant order."""
    return [v for c in CHECKS for v in c(session)]
