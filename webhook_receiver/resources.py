"""The receiver's resources, kept on the Flask app (``app.extensions["gpubill"]``), and
its after-commit publisher (``publisher``)."""
from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from base import after_commit, queues
from base.batch_publisher import BatchPublisher


@dataclass
class Resources:
    sessions: sessionmaker[Session]
    producer: Celery
    intake: sessionmaker[Session]  # stores inbound webhook events (ledger.inbox.intake_engine)
    stripe_events: BatchPublisher  # publishes stripe.process_event after the answer


def publisher(producer: Celery, stripe_events: BatchPublisher) -> after_commit.Publish:
    """The publish function the receiver's session factories flush at commit
    (``base.after_commit.install``): ``stripe.process_event`` ids go to the batch
    publisher (one message for many ids under load: docs/decisions.md "Webhook intake"),
    everything else is enqueued at once. True when handed over / enqueued."""

    def publish(task_name: str, *args: str, countdown: float | None = None) -> bool:
        if task_name == queues.PROCESS_STRIPE_EVENT and countdown is None:
            for event_id in args:
                stripe_events.submit(event_id)
            return True
        return queues.enqueue(producer, task_name, *args, countdown=countdown)

    return publish


def _resources() -> Resources:
    return current_app.extensions["gpubill"]


def sessions() -> sessionmaker[Session]:
    """Sessions on the ledger; what they ``publish_after_commit`` goes out at commit."""
    return _resources().sessions


def intake() -> sessionmaker[Session]:
    """Sessions on the intake engine (autocommit on PostgreSQL: ``ledger.inbox``); what
    they ``publish_after_commit`` goes out at commit."""
    return _resources().intake


def producer() -> Celery:
    return _resources().producer
