"""The receiver's resources, kept on the Flask app (``app.extensions["gpubill"]``)."""
from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from flask import current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from base import queues
from base.batch_publisher import BatchPublisher


@dataclass
class Services:
    sessions: sessionmaker[Session]
    producer: Celery
    intake: Engine  # stores inbound webhook events (ledger.inbox.intake_engine)
    stripe_events: BatchPublisher  # publishes stripe.process_event after the answer


def _services() -> Services:
    return current_app.extensions["gpubill"]


def sessions() -> sessionmaker[Session]:
    return _services().sessions


def intake() -> Engine:
    return _services().intake


def publish(task_name: str, *args: str) -> bool:
    """Enqueue by name; call only after the row it refers to is committed."""
    return queues.enqueue(_services().producer, task_name, *args)


def publish_stripe_event(event_id: str) -> None:
    """Hand a committed Stripe event to the batch publisher; returns at once."""
    _services().stripe_events.submit(event_id)


def producer() -> Celery:
    return _services().producer
