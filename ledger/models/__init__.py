"""Ledger tables (SQLAlchemy 2.0, typed), one module per concept, re-exported here so
``from ledger.models import X`` is the one import. Money columns are BIGINT credits.

- ``base``: the declarative base, naming convention, ``check_in`` (CHECKs generated
  from status enums) and ``Backoff`` / ``Republishing`` (the one retry schedule);
- ``accounts``: accounts, wallets, transactions and postings (double entry);
- ``holds``: pending transfers;
- ``jobs``: the job aggregate in named parts, RunPod job ids, idempotency keys;
- ``stripe``: Stripe events, top-ups, refunds/disputes, customers, subscriptions;
- ``notifications``: the outbound webhook outbox;
- ``operators``: API keys, adjustments, reconcile runs, task locks.

Statuses are ``enum.StrEnum``: members are the stored strings (and the HTTP API's).
Schema changes go through Alembic revisions in ``ledger/migrations``.
"""
from ledger.models.accounts import (
    ADJUSTMENTS,
    PROMOTIONS,
    REVENUE_GPU,
    STRIPE_CLEARING,
    SYSTEM_ACCOUNTS,
    Account,
    LedgerTransaction,
    Posting,
    Wallet,
    wallet_account,
)
from ledger.models.base import NAMING, Backoff, Base, BigId, Republishing, check_in, in_list, utcnow
from ledger.models.holds import Hold, HoldStatus
from ledger.models.jobs import (
    FrozenQuote,
    IdempotencyKey,
    Job,
    JobStatus,
    Lifecycle,
    Receipt,
    RunPodJob,
    RunPodRole,
    RunPodState,
    Scheduling,
    StopReason,
    StopRequest,
)
from ledger.models.notifications import Notification, NotificationStatus
from ledger.models.operators import Adjustment, ApiKey, ReconcileRun, TaskLock
from ledger.models.stripe import (
    EventStatus,
    Reversal,
    ReversalStatus,
    StripeCustomer,
    StripeEvent,
    StripeSubscription,
    Topup,
    TopupStatus,
)

__all__ = [
    "ADJUSTMENTS", "NAMING", "PROMOTIONS", "REVENUE_GPU", "STRIPE_CLEARING", "SYSTEM_ACCOUNTS",
    "Account", "Adjustment", "ApiKey", "Backoff", "Base", "BigId", "EventStatus", "FrozenQuote",
    "Hold", "HoldStatus", "IdempotencyKey", "Job", "JobStatus", "LedgerTransaction", "Lifecycle",
    "Notification", "NotificationStatus", "Posting", "Receipt", "ReconcileRun", "Republishing",
    "Reversal", "ReversalStatus", "RunPodJob", "RunPodRole", "RunPodState", "Scheduling",
    "StopReason", "StopRequest", "StripeCustomer", "StripeEvent", "StripeSubscription",
    "TaskLock", "Topup", "TopupStatus", "Wallet", "check_in", "in_list", "utcnow",
    "wallet_account",
]
