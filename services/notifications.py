"""Outbound webhooks to the app about terminal job states (``job.completed``, …).

Persist first: the row is written by ``record`` in the transaction that ends the job
(see ``ledger.jobs.add_notification``) and published after that transaction commits
(``base.after_commit``); the outbox sweeper re-publishes rows whose task never ran. Delivery is
at-least-once: the app deduplicates on the event ``id``. Each POST is signed like
Stripe's webhooks — header ``Gpubill-Signature: t={unix seconds},v1={hex HMAC-SHA256 of
"{t}.{body}" under GPUBILL_NOTIFY_SECRET}`` — so the app can verify it with
``stripe.WebhookSignature.verify_header``.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from datetime import timedelta
from functools import lru_cache

import requests
from sqlalchemy import and_
from sqlalchemy.orm import Session, sessionmaker

from base import queues
from base.after_commit import publish_after_commit
from base.settings import get_settings
from ledger.db import transaction as db_transaction
from ledger.jobs import add_notification
from ledger.models import Job, Notification, NotificationStatus, utcnow
from services.outbox import Outbox

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "Gpubill-Signature"


def record(s: Session, job: Job) -> str:
    """Store the notification of ``job``'s (terminal) status, to be published with
    ``notify.send`` when ``s``'s transaction commits (``base.after_commit``). Without
    ``GPUBILL_NOTIFY_URL`` it is stored ``skipped`` and not published. Returns the event id."""
    if not get_settings().notify_url:  # nowhere to send: keep the record only
        return add_notification(s, job, NotificationStatus.SKIPPED)
    event_id = add_notification(s, job)
    publish_after_commit(s, queues.SEND_NOTIFICATION, event_id)
    return event_id


def signature(payload: bytes, secret: str, timestamp: int) -> str:
    """Stripe's scheme: ``t={timestamp},v1={hex HMAC-SHA256(secret, "{t}." + payload)}``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class DeliveryFailed(Exception):
    """The app did not answer 2xx (or could not be reached); retry later."""


@lru_cache(maxsize=4)
def _http(pid: int) -> requests.Session:
    """This process's HTTP session (a new one after a fork): keep-alive connections to
    the app are reused instead of a new ``requests.Session`` and TCP/TLS handshake per
    POST (``requests.post`` builds and closes a session each call)."""
    return requests.Session()


def post(url: str, secret: str, payload: str, timeout_s: float) -> None:
    """POST ``payload`` (JSON text) to ``url``, signed now, on this process's pooled
    session. Raises ``DeliveryFailed`` (a dropped keep-alive connection included: the
    task retries it)."""
    body = payload.encode()
    headers = {"Content-Type": "application/json",
               SIGNATURE_HEADER: signature(body, secret, int(time.time()))}
    try:
        answer = _http(os.getpid()).post(url, data=body, headers=headers, timeout=timeout_s)
    except requests.RequestException as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
    if not 200 <= answer.status_code < 300:
        raise DeliveryFailed(f"HTTP {answer.status_code}")


def pending(factory: sessionmaker[Session], event_id: str) -> tuple[str, int] | None:
    """(payload, attempts so far) of a notification still to send, else None."""
    with db_transaction(factory) as s:
        row = s.get(Notification, event_id)
        if row is None or row.status != NotificationStatus.PENDING:
            return None
        return row.payload, row.attempts


def settle(factory: sessionmaker[Session], event_id: str, status: str,
           error: str | None = None, retry_in_s: float | None = None) -> None:
    """Record one delivery attempt: ``status`` sent / failed / skipped, or still pending
    with the next attempt due in ``retry_in_s`` seconds (the sweeper waits for it)."""
    with db_transaction(factory) as s:
        row = s.get(Notification, event_id, with_for_update=True)
        if row is None or row.status != NotificationStatus.PENDING:
            return
        now = utcnow()
        row.attempts += status != NotificationStatus.SKIPPED
        row.status = status
        row.last_error = error or row.last_error  # a success keeps the last failure, for audit
        if status == NotificationStatus.SENT:
            row.sent_at = now
        if retry_in_s is not None:
            row.next_attempt_at = now + timedelta(seconds=retry_in_s)
    if status == NotificationStatus.FAILED:
        log.error("notification %s given up after retries: %s", event_id, error)


# Outbox entry (``services.outbox``): a notification still to send whose next attempt is
# overdue. ``notify.send`` counts its own attempts: the sweep only pushes the next one back.
OUTBOX = (
    Outbox(queues.SEND_NOTIFICATION, Notification, lambda cutoff: and_(
        Notification.status == NotificationStatus.PENDING, Notification.next_attempt_at < cutoff),
        (Notification.id,), Notification.attempts, Notification.next_attempt_at, counted=False),
)
