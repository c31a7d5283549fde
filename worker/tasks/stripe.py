"""Stripe event tasks (queue ``stripe``)."""
from __future__ import annotations

import logging

from sqlalchemy.exc import OperationalError

from gpubill import queues
from worker import context, stripe_events
from worker.app import app
from worker.tasks import MAX_RETRIES, backoff

log = logging.getLogger(__name__)


@app.task(name=queues.PROCESS_STRIPE_EVENT, bind=True, max_retries=MAX_RETRIES)
def process_event(self, event_id: str) -> str | None:
    """Apply stored Stripe event ``event_id`` (``evt_…``) once."""
    try:
        return stripe_events.process_event(context.sessions(), event_id,
                                           livemode=context.settings().stripe_livemode)
    except OperationalError as exc:  # database unavailable / lock timeout: transient
        raise self.retry(exc=exc, countdown=backoff(self.request.retries))
    except Exception as exc:
        log.exception("stripe event %s failed", event_id)
        stripe_events.record_failure(context.sessions(), event_id, f"{type(exc).__name__}: {exc}")
        return "failed"
