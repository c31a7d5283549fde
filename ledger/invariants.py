"""The ledger invariants of docs/architecture.md, checked over the whole database.

``check(session)`` returns every violation found (empty list = consistent). It reads
only; run it in its own transaction. Used by ``gpubill reconcile``, the demo and the
tests after every step.

A check marked ``@keyed(column)`` takes ``within``, a condition on that column, so
``ledger.reconcile`` can run it chunk by chunk (bounded statements, a progress bar);
a plain ``check(session)`` function in ``CHECKS`` runs whole.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, true
from sqlalchemy.orm import Session

from ledger.models import (
    Adjustment,
    Hold,
    HoldStatus,
    Job,
    JobStatus,
    LedgerTransaction,
    Posting,
    Reversal,
    Topup,
    Wallet,
)


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant: ``invariant`` is its number in docs/architecture.md (1–6)."""

    invariant: int
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.subject}: {self.detail}"


def keyed(column: Any, name: str) -> Callable[[Callable[..., list[Violation]]], Callable[..., list[Violation]]]:
    """Mark a check as runnable over chunks of ``column`` (its subject's key); ``name``
    is its row in the reconcile summary."""

    def mark(fn: Callable[..., list[Violation]]) -> Callable[..., list[Violation]]:
        fn.key, fn.check_name = column, name  # type: ignore[attr-defined]  # marks on a plain function
        return fn

    return mark


ALL: ColumnElement[bool] = true()


@keyed(LedgerTransaction.id, "transactions balance (1)")
def _balanced_transactions(s: Session, within: ColumnElement[bool] = ALL) -> list[Violation]:
    n, total = func.count(Posting.id), func.coalesce(func.sum(Posting.amount), 0)
    legs = (select(LedgerTransaction.id, n, total)
            .outerjoin(Posting, Posting.transaction_id == LedgerTransaction.id)
            .where(within).group_by(LedgerTransaction.id).having(or_(n < 2, total != 0)))
    return [Violation(1, f"transaction {tx}", f"{n} postings summing to {total}")
            for tx, n, total in s.execute(legs)]


@keyed(Wallet.user_id, "wallet caches (2)")
def _wallet_caches(s: Session, within: ColumnElement[bool] = ALL) -> list[Violation]:
    out: list[Violation] = []
    # Correlated sums: per-wallet index lookups, so a chunk of wallets stays cheap.
    posted = (select(func.coalesce(func.sum(Posting.amount), 0))
              .where(Posting.account_id == Wallet.account_id).scalar_subquery())
    held = (select(func.coalesce(func.sum(Hold.amount), 0))
            .where(Hold.user_id == Wallet.user_id, Hold.status == HoldStatus.OPEN).scalar_subquery())
    rows = s.execute(select(Wallet.user_id, Wallet.balance, Wallet.held, posted, held)
                     .where(within, or_(Wallet.balance != posted, Wallet.held != held)))
    for user, balance, held_cache, posted_sum, open_sum in rows:
        if balance != posted_sum:
            out.append(Violation(2, f"wallet {user}", f"balance {balance} != postings {posted_sum}"))
        if held_cache != open_sum:
            out.append(Violation(2, f"wallet {user}", f"held {held_cache} != open holds {open_sum}"))
    return out


@keyed(Wallet.user_id, "available >= 0 (3)")
def _available(s: Session, within: ColumnElement[bool] = ALL) -> list[Violation]:
    """Debt is allowed down to exactly what claw-backs took net of restores (a refund or
    dispute after the credits were spent), or after an operator adjustment audited with
    --allow-debt; any other negative ``available`` is a violation (issue 12, case 5:
    one claw-back used to exempt the wallet forever)."""
    net_clawed = (select(-func.coalesce(func.sum(LedgerTransaction.amount), 0))
                  .where(LedgerTransaction.user_id == Wallet.user_id,
                         LedgerTransaction.kind.in_(("clawback", "restore"))).scalar_subquery())
    allowed = select(Adjustment.user_id).where(Adjustment.allow_debt.is_(True))
    available = Wallet.balance - Wallet.held
    rows = s.execute(select(Wallet.user_id, Wallet.balance, Wallet.held, net_clawed).where(
        within, available < 0, available < -net_clawed, Wallet.user_id.not_in(allowed)))
    return [Violation(3, f"wallet {u}", f"available {b - h} < 0 beyond the {c} credits clawed back")
            for u, b, h, c in rows]


@keyed(Hold.id, "holds end once (4)")
def _holds(s: Session, within: ColumnElement[bool] = ALL) -> list[Violation]:
    out: list[Violation] = []
    bad = s.execute(select(Hold.id, Hold.status, Hold.amount, Hold.captured, Hold.close_key).where(
        within, or_(
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
        .where(within, Hold.status == HoldStatus.CAPTURED,
               or_(LedgerTransaction.id.is_(None), LedgerTransaction.amount != Hold.captured)))
    out += [Violation(4, f"hold {i}", f"captured {c} but capture transaction says {t}")
            for i, c, t in mismatched]
    return out


@keyed(LedgerTransaction.ref, "credited / charged once (5)")
def _once_per_ref(s: Session, within: ColumnElement[bool] = ALL) -> list[Violation]:
    out: list[Violation] = []
    for kind, what in (("topup", "checkout session"), ("capture", "job"), ("grant", "invoice"),
                       ("clawback", "refund/dispute"), ("restore", "refund/dispute")):
        dup = s.execute(select(LedgerTransaction.ref, func.count()).where(
            within, LedgerTransaction.kind == kind, LedgerTransaction.ref.is_not(None))
            .group_by(LedgerTransaction.ref).having(func.count() > 1))
        out += [Violation(5, f"{what} {ref}", f"{n} {kind} transactions") for ref, n in dup]
    return out


@keyed(Topup.id, "credited top-ups posted (5)")
def _credited_topups(s: Session, within: ColumnElement[bool] = ALL) -> list[Violation]:
    credited = s.execute(select(Topup.checkout_session_id).where(within, Topup.status == "credited", Topup.credits > 0)
                         .where(Topup.checkout_session_id.not_in(
                             select(LedgerTransaction.ref).where(LedgerTransaction.kind.in_(("topup", "grant"))))))
    return [Violation(5, f"checkout session {sid}", "marked credited without a top-up transaction")
            for (sid,) in credited]


@keyed(Reversal.topup_id, "refund/dispute claw-backs posted (5)")
def _reversals(s: Session, within: ColumnElement[bool] = ALL) -> list[Violation]:
    """Issue 3: each refund/dispute's recorded claw-back equals its posted steps, and a
    top-up never loses more credits than it bought."""
    posted = -func.coalesce(func.sum(LedgerTransaction.amount), 0)
    rows = s.execute(select(Reversal.id, Reversal.clawed, posted)
                     .outerjoin(LedgerTransaction, and_(LedgerTransaction.ref == Reversal.id,
                                LedgerTransaction.kind.in_(("clawback", "restore"))))
                     .where(within).group_by(Reversal.id, Reversal.clawed)
                     .having(Reversal.clawed != posted))
    out = [Violation(5, f"reversal {r}", f"records {c} clawed, ledger {p}") for r, c, p in rows]
    over = s.execute(select(Topup.id, Topup.credits, func.sum(Reversal.clawed))
                     .join(Reversal, Reversal.topup_id == Topup.id).where(within)
                     .group_by(Topup.id, Topup.credits).having(func.sum(Reversal.clawed) > Topup.credits))
    return out + [Violation(5, f"top-up {t}", f"clawed {c} of {n} credits") for t, n, c in over]


@keyed(Job.id, "job receipts = captures (5)")
def _job_charges(s: Session, within: ColumnElement[bool] = ALL) -> list[Violation]:
    captured = func.coalesce(func.sum(LedgerTransaction.amount), 0)
    charged = s.execute(
        select(Job.id, Job.charge, captured)
        .outerjoin(LedgerTransaction, and_(LedgerTransaction.kind == "capture",
                                           LedgerTransaction.ref == Job.id))
        .where(within).group_by(Job.id, Job.charge)
        .having(func.coalesce(Job.charge, 0) != captured))
    return [Violation(5, f"job {j}", f"receipt charge {c} != captured {t}") for j, c, t in charged]


@keyed(Job.id, "terminal jobs hold nothing (6)")
def _terminal_jobs(s: Session, within: ColumnElement[bool] = ALL) -> list[Violation]:
    rows = s.execute(select(Job.id, Job.status, Hold.id).join(Hold, Hold.job_id == Job.id)
                     .where(within, Job.status.in_(JobStatus.TERMINAL), Hold.status == HoldStatus.OPEN))
    return [Violation(6, f"job {j}", f"{st} but hold {h} is still open") for j, st, h in rows]


CHECKS: tuple[Callable[..., list[Violation]], ...] = (
    _balanced_transactions, _wallet_caches, _available, _holds, _once_per_ref, _credited_topups,
    _reversals, _job_charges, _terminal_jobs,
)


def check(session: Session) -> list[Violation]:
    """Every violation of docs/architecture.md invariants 1–6 in the ledger, in invariant order."""
    return [v for c in CHECKS for v in c(session)]
