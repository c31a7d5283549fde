"""Stripe event tasks (queue ``stripe``).

A batch re-publishes an event that must wait as a task of its own directly
(``context.publish`` with a countdown), not after a commit: it is the task re-scheduling
its own work, like ``self.retry`` for a single id — ``services.stripe_events`` committed
nothing that makes it due (the row stays ``received``), and the outbox sweeper
publishes it if this publish is lost.
"""
from __future__ import annotations

import logging
from typing import Any

import stripe
from sqlalchemy.exc import OperationalError

from base import logs, queues
from services import stripe_events
from worker import context
from worker.app import app
from worker.tasks import MAX_RETRIES, backoff

log = logging.getLogger(__name__)
# Database unavailable / lock timeout, or Stripe unreachable after the SDK's own retries.
TRANSIENT = (OperationalError, stripe.APIConnectionError, stripe.RateLimitError)
RETRYING = "retrying"  # a batch's answer for an event handed to a task of its own


@app.task(name=queues.PROCESS_STRIPE_EVENT, bind=True, max_retries=MAX_RETRIES)
def process_event(self, *event_ids: str) -> str | dict[str, str | None] | None:
    """Apply stored Stripe events ``event_ids`` (``evt_…``) once each, in order.

    The receiver publishes one id, or under load a batch of them
    (``base.batch_publisher``). An event waiting for something not known yet (a
    refund before its top-up is credited) is retried with backoff from
    ``stripe_retry_base_s``; the event row counts the attempts and parks it ``failed``
    after ``stripe_pending_attempts`` attempts and ``stripe_pending_window_s`` of
    waiting. In a batch, such an event (or one that met a transient error) is published
    again as a task of its own, so the others are not held back or applied again.
    Returns the status (one id) or ``{id: status}``.
    """
    cfg = context.settings()
    if len(event_ids) == 1:
        try:
            status = _apply(event_ids[0])
        except TRANSIENT as exc:
            raise self.retry(exc=exc, countdown=backoff(self.request.retries))
        if status == stripe_events.PENDING:
            # The bounds (attempts and waiting window) live on the event row; past this
            # chain's retries the row stays received and the outbox sweeper re-publishes
            # it (its backoff capped at 600 s) until it applies or parks.
            limit = cfg.stripe_pending_attempts + MAX_RETRIES
            if self.request.retries >= limit:
                return status
            raise self.retry(countdown=backoff(self.request.retries, base=cfg.stripe_retry_base_s),
                             max_retries=limit)
        return status
    results: dict[str, str | None] = {}
    for event_id in event_ids:
        with logs.bound(event_id=event_id):
            try:
                status, base = _apply(event_id), cfg.stripe_retry_base_s
            except TRANSIENT:
                log.warning("stripe event %s met a transient error; retrying alone", event_id, exc_info=True)
                status, base = stripe_events.PENDING, 1.0
            if status == stripe_events.PENDING:
                # Publishing fails only with the broker down: the row stays received
                # and the outbox sweeper publishes it.
                context.publish(queues.PROCESS_STRIPE_EVENT, event_id, countdown=backoff(0, base=base))
                status = RETRYING
            results[event_id] = status
            log.info("stripe event %s: %s (batch of %d)", event_id, status, len(event_ids))
    return results


def _refunds_of_charge(charge_id: str) -> list[dict[str, Any]]:
    """This process's Stripe gateway, created on first use (most events never need it)."""
    return context.stripe().refunds_of_charge(charge_id)


def _apply(event_id: str) -> str | None:
    """Apply one event; an unexpected error parks it ``failed`` (returns "failed").
    Raises the ``TRANSIENT`` errors."""
    cfg = context.settings()
    try:
        return stripe_events.process_event(context.sessions(), event_id, livemode=cfg.stripe_livemode,
                                           max_attempts=cfg.stripe_pending_attempts,
                                           window_s=cfg.stripe_pending_window_s,
                                           fetch_refunds=_refunds_of_charge)
    except TRANSIENT:
        raise
    except Exception as exc:
        log.exception("stripe event %s failed", event_id)
        stripe_events.record_failure(context.sessions(), event_id, f"{type(exc).__name__}: {exc}")
        return "failed"
