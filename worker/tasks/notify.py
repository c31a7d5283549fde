"""Outbound webhook tasks (queue ``notify``): tell the app about terminal job states."""
from __future__ import annotations

from sqlalchemy.exc import OperationalError

from base import queues
from ledger.models import NotificationStatus
from services import notifications
from worker import context
from worker.app import app
from worker.tasks import MAX_RETRIES, backoff


@app.task(name=queues.SEND_NOTIFICATION, bind=True, max_retries=None)
def send(self, event_id: str) -> str | None:
    """POST notification ``event_id`` (``evt_…``) to ``GPUBILL_NOTIFY_URL``, signed.
    Non-2xx or unreachable → retried with exponential backoff and jitter (attempts are
    counted on the row, so a re-publish by the sweeper continues the count); after
    ``GPUBILL_NOTIFY_MAX_RETRIES`` retries the row is parked ``failed``."""
    cfg = context.settings()
    try:
        found = notifications.pending(context.sessions(), event_id)
        if found is None:
            return None
        payload, attempts = found
        if not cfg.notify_url:
            notifications.settle(context.sessions(), event_id, NotificationStatus.SKIPPED)
            return NotificationStatus.SKIPPED
        try:
            notifications.post(cfg.notify_url, cfg.notify_secret.get_secret_value(), payload,
                               cfg.notify_timeout_s)
        except notifications.DeliveryFailed as exc:
            if attempts >= cfg.notify_max_retries:
                notifications.settle(context.sessions(), event_id, NotificationStatus.FAILED, str(exc))
                return NotificationStatus.FAILED
            wait = backoff(attempts, cfg.retry_backoff_s)
            notifications.settle(context.sessions(), event_id, NotificationStatus.PENDING,
                                 str(exc), retry_in_s=wait)
            raise self.retry(exc=exc, countdown=wait)
        notifications.settle(context.sessions(), event_id, NotificationStatus.SENT)
        return NotificationStatus.SENT
    except OperationalError as exc:
        raise self.retry(exc=exc, countdown=backoff(min(self.request.retries, MAX_RETRIES)))
