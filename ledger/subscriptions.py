"""A wallet's Stripe subscriptions as their latest snapshots showed them (no money:
credits come with paid invoices, ``ledger.topups.grant_invoice``).

Runs inside the caller's transaction; the row is locked while a snapshot is applied.
"""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.models import StripeSubscription, utcnow
from ledger.statements import insert_ignore


def store(s: Session, *, subscription_id: str, user_id: str, customer: str | None, plan: str | None,
          status: str, current_period_end: int | None, snapshot_at: int) -> bool:
    """Apply one snapshot of subscription ``subscription_id`` (``current_period_end``
    and ``snapshot_at`` in Unix seconds). An older snapshot than the stored one
    changes nothing (Stripe does not order deliveries); returns whether it applied."""
    insert_ignore(s, StripeSubscription, id=subscription_id, user_id=user_id, customer_id=customer,
                      plan=plan, status=status, snapshot_at=-1, updated_at=utcnow())
    row = s.get(StripeSubscription, subscription_id, with_for_update=True, populate_existing=True)
    assert row is not None
    # Stripe does not order deliveries; a canceled subscription is never reactivated.
    if snapshot_at < row.snapshot_at or row.status == "canceled":
        return False
    row.customer_id = customer or row.customer_id
    row.plan = plan or row.plan
    row.status, row.snapshot_at, row.updated_at = status, snapshot_at, utcnow()
    if current_period_end is not None:
        row.current_period_end = datetime.fromtimestamp(current_period_end, UTC).replace(tzinfo=None)
    return True


def of_wallet(s: Session, user_id: str) -> list[StripeSubscription]:
    """``user_id``'s subscriptions, most recently updated first."""
    return list(s.scalars(select(StripeSubscription).where(StripeSubscription.user_id == user_id)
                          .order_by(StripeSubscription.snapshot_at.desc(), StripeSubscription.id)))
