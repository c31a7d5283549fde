"""Stripe-side reconciliation checks: every paid session credited once, top-up amounts,
claw-backs once and equal to the refunded share, no money event parked or in the wrong
mode. Each is ``check(session, within) -> list[Violation]`` (``ledger.invariants.keyed``),
run chunk by chunk by ``ledger.reconcile.run_checks``. Credits are int; Stripe amounts
int cents.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from ledger.invariants import Violation, keyed
from ledger.models import (
    EventStatus,
    LedgerTransaction,
    Reversal,
    ReversalStatus,
    StripeEvent,
    Topup,
    TopupStatus,
)
from ledger.topups import share

PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


@keyed(StripeEvent.id, "paid sessions credited (stripe)")
def _paid_sessions_credited(s: Session, within: ColumnElement[bool]) -> list[Violation]:
    """Every processed paid-session event of a pack (``mode=payment``) has its top-up
    credited by exactly one ``topup`` transaction of the top-up's credits to its user."""
    out: list[Violation] = []
    events = s.execute(select(StripeEvent.id, StripeEvent.payload).where(
        within, StripeEvent.type.in_(PAID_EVENTS), StripeEvent.status == "processed")).all()
    sessions: dict[str, str] = {}
    for event_id, payload in events:
        try:
            obj = json.loads(payload)["data"]["object"]
        except (ValueError, KeyError, TypeError):
            out.append(Violation(5, f"stripe event {event_id}", "processed, but its payload is unreadable"))
            continue
        # A mode=subscription session credits nothing itself: its invoices do (each a
        # top-up row of its own, ``ledger.topups.grant_invoice``), checked by the rest.
        if obj.get("payment_status") == "paid" and obj.get("id") and obj.get("mode") != "subscription":
            sessions[obj["id"]] = event_id
    if not sessions:
        return out
    credited = dict(s.execute(select(LedgerTransaction.ref, func.count()).where(
        LedgerTransaction.kind == "topup", LedgerTransaction.ref.in_(sessions))
        .group_by(LedgerTransaction.ref)).all())
    topups = {t.checkout_session_id: t for t in s.scalars(
        select(Topup).where(Topup.checkout_session_id.in_(sessions)))}
    for sid, event_id in sessions.items():
        topup, n = topups.get(sid), credited.get(sid, 0)
        if topup is None or topup.status != TopupStatus.CREDITED or n != 1:
            state = topup.status if topup is not None else "no top-up row"
            out.append(Violation(5, f"checkout session {sid}",
                                 f"paid ({event_id}) but {state}, {n} top-up transactions"))
    return out


# A function attribute that the runner reads (raw payloads: smaller chunks).
_paid_sessions_credited.chunk = 500  # type: ignore[attr-defined]  # set on a plain function


# Event types whose handler moves money (credit, grant, claw-back, restore) or links the
# payment a later claw-back needs: parked, they leave the ledger short of what Stripe did.
MONEY_EVENTS = (*PAID_EVENTS, "charge.refunded", "refund.created", "refund.updated", "refund.failed",
                "charge.refund.updated", "charge.dispute.created", "charge.dispute.funds_withdrawn",
                "charge.dispute.funds_reinstated", "charge.dispute.closed", "invoice.paid",
                "invoice_payment.paid")


@keyed(StripeEvent.id, "events parked or in the wrong mode (stripe)")
def _events_not_applied(s: Session, within: ColumnElement[bool]) -> list[Violation]:
    """Stripe events that did not reach the ledger and never will by themselves (issue
    12): one whose ``livemode`` differs from the deployment's (``wrong_mode``, a
    misconfigured key or endpoint), and a parked (``failed``) event of a type that moves
    money. Each is named with its reason; ``gpubill events replay`` re-applies a parked one."""
    rows = s.execute(select(StripeEvent.id, StripeEvent.type, StripeEvent.status, StripeEvent.last_error)
                     .where(within, or_(StripeEvent.status == EventStatus.WRONG_MODE,
                                        and_(StripeEvent.status == EventStatus.FAILED,
                                             StripeEvent.type.in_(MONEY_EVENTS)))))
    wrong = "in the wrong mode (livemode differs from the deployment)"
    return [Violation(5, f"stripe event {eid}",
                      f"{etype} {wrong if status == EventStatus.WRONG_MODE else 'parked'}: {(error or '')[:200]}")
            for eid, etype, status, error in rows]


@keyed(Topup.id, "top-up credits match (stripe)")
def _topup_amounts(s: Session, within: ColumnElement[bool]) -> list[Violation]:
    """A credited top-up's transaction moved exactly its credits to its user."""
    rows = s.execute(
        select(Topup.checkout_session_id, Topup.user_id, Topup.credits,
               LedgerTransaction.user_id, LedgerTransaction.amount)
        .join(LedgerTransaction, and_(LedgerTransaction.kind == "topup",
                                      LedgerTransaction.ref == Topup.checkout_session_id))
        .where(within, or_(LedgerTransaction.amount != Topup.credits,
                           LedgerTransaction.user_id != Topup.user_id)))
    return [Violation(5, f"checkout session {sid}",
                      f"top-up of {credits} for {user} posted as {amount} for {tx_user}")
            for sid, user, credits, tx_user, amount in rows]


@keyed(Reversal.id, "refunds clawed back once (stripe)")
def _reversals_clawed_once(s: Session, within: ColumnElement[bool]) -> list[Violation]:
    """Each refund/dispute has at most one claw-back and one restore transaction (that
    they net to its recorded ``clawed`` is invariant 5's ``_reversals``)."""
    n_claw = func.count(LedgerTransaction.id).filter(LedgerTransaction.kind == "clawback")
    n_restore = func.count(LedgerTransaction.id).filter(LedgerTransaction.kind == "restore")
    rows = s.execute(
        select(Reversal.id, n_claw, n_restore)
        .join(LedgerTransaction, and_(LedgerTransaction.ref == Reversal.id,
                                      LedgerTransaction.kind.in_(("clawback", "restore"))))
        .where(within).group_by(Reversal.id).having(or_(n_claw > 1, n_restore > 1)))
    return [Violation(5, f"reversal {rid}", f"{c} claw-backs and {r} restores") for rid, c, r in rows]


@keyed(Topup.id, "top-up claw-backs = refunded share (stripe)")
def _topup_clawed_share(s: Session, within: ColumnElement[bool]) -> list[Violation]:
    """Credits clawed back over a top-up's reversals equal the share Stripe took back."""
    rows = s.execute(
        select(Topup.checkout_session_id, Topup.credits, Topup.amount_total, Reversal.status,
               Reversal.amount, Reversal.clawed)
        .join(Reversal, Reversal.topup_id == Topup.id).where(within).order_by(Topup.id)).all()
    per: dict[str, list[Any]] = {}
    for sid, credits, total, status, amount, clawed in rows:
        acc = per.setdefault(sid, [credits, total, 0, 0])
        acc[2] += amount if status in ReversalStatus.TAKEN else 0
        acc[3] += clawed
    return [Violation(5, f"checkout session {sid}",
                      f"Stripe took {taken} cents back → {share(credits, total, taken)} credits, "
                      f"{clawed} clawed back")
            for sid, (credits, total, taken, clawed) in per.items()
            if share(credits, total, taken) != clawed]


def stripe_checks() -> tuple[Callable[..., list[Violation]], ...]:
    """Stripe-side consistency checks (same shape as ``ledger.invariants.CHECKS``)."""
    return (_paid_sessions_credited, _topup_amounts, _reversals_clawed_once, _topup_clawed_share,
            _events_not_applied)
