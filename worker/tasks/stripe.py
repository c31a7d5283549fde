"""Stripe event tasks (queue ``stripe``)."""
from __future__ import annotations

import logging

import stripe
from sqlalchemy.exc import OperationalError

from gpubill import queues
from worker import context, stripe_events
from worker.app import app
from worker.tasks import MAX_RETRIES, backoff

log = logging.getLogger(__name__)
# Database unavailable / lock timeout, or Stripe unreachable after the SDK's own retries.
TRANSIENT = (OperationalError, stripe.APIConnectionError, stripe.RateLimitError)


@app.task(name=queues.PROCESS_STRIPE_EVENT, bind=True, max_retries=MAX_RETRIES)
def process_event(self, event_id: str) -> str | None:
    """Apply stored Stripe event ``event_id`` (``evt_…``) once.

    An event waiting for something not known yet (a refund before its top-up is
    credited) is retried with backoff from ``stripe_retry_base_s``; the event row counts
    the attempts and parks it ``failed`` after ``stripe_pending_attempts``.
    """
    cfg = context.settings()
    try:
        status = stripe_events.process_event(context.sessions(), event_id,
                                             livemode=cfg.stripe_livemode,
                                             max_attempts=cfg.stripe_pending_attempts)
    except TRANSIENT as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries))
    except Exception as exc:
        log.exception("stripe event %s failed", event_id)
        stripe_events.record_failure(context.sessions(), event_id, f"{type(exc).__name__}: {exc}")
        return "failed"
    if status == stripe_events.PENDING:
        # The attempt bound lives on the event row (the outbox sweeper may deliver it
        # too); Celery's own retry limit is only set above it.
        raise self.retry(countdown=backoff(self.request.retries, base=cfg.stripe_retry_base_s),
                         max_retries=cfg.stripe_pending_attempts + MAX_RETRIES)
    return status
