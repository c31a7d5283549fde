"""Top-ups bought through Stripe Checkout, and the money that goes back: refunds and
disputes of a top-up's charge, subscription invoice grants.

All functions run inside the caller's DB transaction and lock the top-up row they act
on (``SELECT … FOR UPDATE``; SQLite serialises writers anyway), so steps for one top-up
never interleave. Every balance change is one ledger call with its own operation key:
``topup:{session_id}``, ``refund:{re_id}``, ``refund:{re_id}:restore``,
``dispute:{dp_id}:withdrawn``, ``dispute:{dp_id}:reinstated``, ``invoice:{in_id}``.
A paid invoice is a top-up row too (``grant_invoice``), so its refunds and disputes
follow the same claw-back rule.

Claw-back rule (docs/decisions.md): Stripe has taken back ``taken`` cents of a top-up
(active refunds + withdrawn or lost disputes, capped at ``amount_total``); the credits
clawed back over all its reversals always equal ``share(taken) = ceil(credits × taken /
amount_total)``. Each step posts only the difference to that target, so a full refund
claws back exactly every credit and partial refunds sum exactly, in any order.
"""
from __future__ import annotations

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from ledger import operations as ops
from ledger.models import (
    STRIPE_CLEARING,
    Reversal,
    ReversalStatus,
    StripeCustomer,
    Topup,
    TopupStatus,
    utcnow,
)
from ledger.statements import insert_ignore
from pricing import Pack


class Rejected(Exception):
    """The event cannot be applied as sent (unknown pack, amount mismatch, closed
    top-up, unknown plan). Parked ``failed`` with this reason, never dropped."""


class NotYet(Exception):
    """What the event refers to is not known (or not credited) yet — a refund before
    its top-up, an invoice before its customer link. Retried with backoff, then parked."""


def share(credits: int, amount_total: int, cents: int) -> int:
    """Credits corresponding to ``cents`` of a top-up of ``amount_total`` cents that
    bought ``credits``: ``ceil(credits × cents / amount_total)``, cents capped to the total."""
    cents = max(0, min(cents, amount_total))
    return -(-credits * cents // amount_total)


def _locked(s: Session, *where: ColumnElement[bool]) -> Topup | None:
    return s.scalars(select(Topup).where(*where).with_for_update()
                     .execution_options(populate_existing=True)).first()


def by_session(s: Session, session_id: str) -> Topup | None:
    """The top-up of Checkout Session ``session_id``, locked."""
    return _locked(s, Topup.checkout_session_id == session_id)


def by_payment_intent(s: Session, payment_intent: str) -> Topup | None:
    """The top-up paid by PaymentIntent ``payment_intent``, locked."""
    return _locked(s, Topup.payment_intent_id == payment_intent)


def open_topup(s: Session, *, session_id: str, user_id: str, pack: Pack,
               customer_id: str | None = None) -> Topup:
    """Store an ``open`` top-up for a created Checkout Session (race-safe: an existing
    row for the session is returned unchanged). Price and credits come from ``pack``."""
    insert_ignore(s, Topup, checkout_session_id=session_id, user_id=user_id, pack=pack.id,
                      credits=pack.credits, amount_total=pack.price, currency=pack.currency,
                      status=TopupStatus.OPEN, customer_id=customer_id, created_at=utcnow())
    topup = by_session(s, session_id)
    assert topup is not None
    return topup


def link(s: Session, topup: Topup, *, payment_intent: str | None = None,
         charge: str | None = None, customer: str | None = None) -> None:
    """Remember the session ↔ payment_intent ↔ charge ↔ customer link (first value wins)."""
    if payment_intent and not topup.payment_intent_id:
        topup.payment_intent_id = payment_intent
    if charge and not topup.charge_id:
        topup.charge_id = charge
    if customer:
        topup.customer_id = topup.customer_id or customer
        insert_ignore(s, StripeCustomer, id=customer, user_id=topup.user_id, created_at=utcnow())


def credit(s: Session, topup: Topup, *, amount_total: object, currency: object,
           event_id: str) -> str:
    """Credit the stored top-up's credits once (op key ``topup:{session_id}``).

    ``amount_total`` (cents) and ``currency`` are what Stripe says was paid; they must
    equal the stored top-up, else the top-up is flagged ``mismatch`` (``note`` = the
    reason) and nothing is credited. Returns the top-up's status after: ``credited``
    (now or before) or ``mismatch``. Raises ``Rejected`` for a closed top-up.
    """
    if topup.status in (TopupStatus.CREDITED, TopupStatus.MISMATCH):
        return topup.status
    if topup.status != TopupStatus.OPEN:
        raise Rejected(f"top-up {topup.id} ({topup.checkout_session_id}) is {topup.status}: "
                       f"{topup.note or 'not creditable'}")
    if amount_total != topup.amount_total or currency != topup.currency:
        topup.status = TopupStatus.MISMATCH
        topup.note = (f"session {topup.checkout_session_id}: paid {amount_total} {currency}, "
                      f"top-up {topup.id} (pack {topup.pack}) costs {topup.amount_total} "
                      f"{topup.currency}")
        return topup.status
    ops.credit_topup(s, user_id=topup.user_id, amount=topup.credits,
                     op_key=f"topup:{topup.checkout_session_id}", ref=topup.checkout_session_id)
    topup.status, topup.credited_at, topup.event_id = TopupStatus.CREDITED, utcnow(), event_id
    return topup.status


def close(s: Session, topup: Topup, status: str, note: str) -> bool:
    """Close an ``open`` top-up without credit (``failed`` / ``expired``). False if it
    was not open (already credited or closed)."""
    if topup.status != TopupStatus.OPEN:
        return False
    topup.status, topup.note, topup.closed_at = status, note, utcnow()
    return True


def for_charge(s: Session, *, charge: str | None, payment_intent: str | None) -> Topup:
    """The credited top-up a charge belongs to, locked, its charge link recorded.

    Raises ``NotYet`` when no top-up is linked to the charge/payment_intent or it is
    not credited yet; ``Rejected`` when it was closed or flagged (nothing to take back).
    """
    topup = _locked(s, Topup.charge_id == charge) if charge else None
    if topup is None and payment_intent:
        topup = by_payment_intent(s, payment_intent)
    if topup is None:
        raise NotYet(f"no top-up linked to charge {charge} / payment_intent {payment_intent} yet")
    if topup.status == TopupStatus.OPEN:
        raise NotYet(f"top-up {topup.id} ({topup.checkout_session_id}) is not credited yet")
    if topup.status != TopupStatus.CREDITED:
        raise Rejected(f"top-up {topup.id} ({topup.checkout_session_id}) is {topup.status}")
    link(s, topup, charge=charge)
    return topup


def _settle(s: Session, topup: Topup, reversal: Reversal, op_key: str) -> int:
    """Post the difference between the credits clawed back so far for ``topup`` and
    ``share(taken)``; returns it (> 0 clawed back, < 0 restored, 0 nothing posted)."""
    s.flush()
    reversals = s.scalars(select(Reversal).where(Reversal.topup_id == topup.id)).all()
    taken = sum(r.amount for r in reversals if r.status in ReversalStatus.TAKEN)
    delta = share(topup.credits, topup.amount_total, taken) - sum(r.clawed for r in reversals)
    if delta:
        kind = ops.TxKind.CLAWBACK if delta > 0 else ops.TxKind.RESTORE
        ops.transfer(s, user_id=topup.user_id, amount=-delta, counter=STRIPE_CLEARING, kind=kind,
                     op_key=op_key, ref=reversal.id, allow_debt=True)
        reversal.clawed += delta
    reversal.updated_at = utcnow()
    return delta


def _reversal(s: Session, rid: str, kind: str, topup: Topup, charge: str | None,
              amount: int, status: str) -> Reversal:
    rev = Reversal(id=rid, kind=kind, topup_id=topup.id, charge_id=charge, amount=amount,
                   status=status, clawed=0, created_at=utcnow(), updated_at=utcnow())
    s.add(rev)
    return rev


REFUND_FAILED = ("failed", "canceled")


def apply_refund(s: Session, topup: Topup, *, refund_id: str, amount: int, status: str,
                 charge: str | None) -> int:
    """Apply Stripe refund ``refund_id`` (``amount`` cents, Stripe ``status``) once:
    pending/succeeded claws back its share (``refund:{id}``); failed/canceled after that
    restores it (``refund:{id}:restore``). A failure is terminal: a later, older
    snapshot of the refund changes nothing. Returns the credits clawed (< 0 restored)."""
    rev = s.get(Reversal, refund_id, with_for_update=True)
    failed = status in REFUND_FAILED
    if rev is None:
        rev = _reversal(s, refund_id, "refund", topup, charge, amount,
                        ReversalStatus.FAILED if failed else ReversalStatus.ACTIVE)
        return 0 if failed else _settle(s, topup, rev, f"refund:{refund_id}")
    if rev.status == ReversalStatus.ACTIVE and failed:
        rev.status = ReversalStatus.FAILED
        return _settle(s, topup, rev, f"refund:{refund_id}:restore")
    return 0


# Dispute steps → (status from nothing or an inquiry, status from withdrawn).
_DISPUTE = {
    "inquiry": (ReversalStatus.INQUIRY, None),
    "withdrawn": (ReversalStatus.WITHDRAWN, None),
    "lost": (ReversalStatus.LOST, ReversalStatus.LOST),
    "won": (ReversalStatus.WON, ReversalStatus.REINSTATED),
}


def apply_dispute(s: Session, topup: Topup, *, dispute_id: str, amount: int, step: str,
                  charge: str | None) -> int:
    """Apply one step of Stripe dispute ``dispute_id`` (``amount`` cents) once.

    ``step``: ``inquiry`` (no funds moved), ``withdrawn`` (claw back the disputed share,
    ``dispute:{id}:withdrawn``), ``won`` (funds reinstated or closed won: restore,
    ``dispute:{id}:reinstated``), ``lost`` (stays clawed back; claws back first if the
    withdrawal was never seen). Won and reinstated are terminal; ``lost`` is not: a later
    ``won`` (funds reinstated after an appeal) restores. Returns credits clawed.
    """
    fresh, after_withdrawn = _DISPUTE[step]
    rev = s.get(Reversal, dispute_id, with_for_update=True)
    if rev is None:
        rev = _reversal(s, dispute_id, "dispute", topup, charge, amount, fresh)
    elif rev.status == ReversalStatus.INQUIRY and step != "inquiry":
        rev.status, rev.amount = fresh, amount
    elif rev.status == ReversalStatus.WITHDRAWN and after_withdrawn:
        rev.status = after_withdrawn
        if after_withdrawn == ReversalStatus.REINSTATED:
            return _settle(s, topup, rev, f"dispute:{dispute_id}:reinstated")
        return 0
    elif rev.status == ReversalStatus.LOST and step == "won":
        # Won on appeal (API 2026-10-28: appeal_needs_response / appeal_under_review
        # after lost): Stripe reinstates the funds, so ``lost`` was not final.
        rev.status = ReversalStatus.REINSTATED
        return _settle(s, topup, rev, f"dispute:{dispute_id}:reinstated")
    else:
        return 0
    if rev.status in (ReversalStatus.WITHDRAWN, ReversalStatus.LOST):
        return _settle(s, topup, rev, f"dispute:{dispute_id}:withdrawn")
    return 0


def wallet_of_customer(s: Session, customer: str) -> str:
    """The wallet (user id) linked to Stripe customer ``customer``; ``NotYet`` if none."""
    link_row = s.get(StripeCustomer, customer)
    if link_row is None:
        raise NotYet(f"no wallet linked to customer {customer} yet")
    return link_row.user_id


INVOICE_PACK = "plan:"  # a paid invoice's top-up row names its plan(s) as ``plan:{id}``


def by_invoice(s: Session, invoice_id: str) -> Topup | None:
    """The top-up row of paid invoice ``invoice_id`` (see ``grant_invoice``), locked."""
    return _locked(s, Topup.checkout_session_id == invoice_id)


def grant_invoice(s: Session, *, invoice_id: str, user_id: str, credits: int, amount_paid: int,
                  currency: str, plan: str, event_id: str) -> bool:
    """Grant a paid subscription invoice's ``credits`` once (``invoice:{in_id}``, kind
    grant, wallet +, ``stripe:clearing`` −). False when already granted.

    An invoice that took money (``amount_paid`` cents > 0) is also stored as a credited
    top-up row (``checkout_session_id`` = the invoice id, ``pack`` = ``plan:{plan}``),
    so its refunds and disputes claw back their share exactly as a pack's do once
    ``link_invoice_payment`` has named its PaymentIntent. A $0 invoice grants (trial
    credits, if any) but has nothing Stripe could take back.
    """
    if amount_paid > 0:
        insert_ignore(s, Topup, checkout_session_id=invoice_id, user_id=user_id,
                          pack=f"{INVOICE_PACK}{plan}"[:32], credits=credits, amount_total=amount_paid,
                          currency=currency, status=TopupStatus.OPEN, created_at=utcnow())
        row = by_invoice(s, invoice_id)
        assert row is not None
        if row.status != TopupStatus.OPEN:
            return False
        row.status, row.credited_at, row.event_id = TopupStatus.CREDITED, utcnow(), event_id
    if credits <= 0:
        return False
    posted = ops.transfer(s, user_id=user_id, amount=credits, counter=STRIPE_CLEARING,
                          kind=ops.TxKind.GRANT, op_key=f"invoice:{invoice_id}", ref=invoice_id)
    return not posted.replayed


def link_invoice_payment(s: Session, *, invoice_id: str, payment_intent: str | None,
                         charge: str | None) -> Topup:
    """Record which PaymentIntent / charge paid invoice ``invoice_id`` (from
    ``invoice_payment.paid``). ``NotYet`` until the invoice's grant is stored."""
    row = by_invoice(s, invoice_id)
    if row is None:
        raise NotYet(f"invoice {invoice_id} not granted yet")
    link(s, row, payment_intent=payment_intent, charge=charge)
    return row


def link_customer(s: Session, customer: str, user_id: str) -> str:
    """Link Stripe customer ``customer`` to wallet ``user_id`` (first link wins);
    returns the linked wallet."""
    insert_ignore(s, StripeCustomer, id=customer, user_id=user_id, created_at=utcnow())
    return wallet_of_customer(s, customer)
