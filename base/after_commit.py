"""One way to publish a task after the transaction that made it due commits.

``publish_after_commit(session, task_name, *ids)`` queues the message on the session;
a listener ``install``-ed on the process's session factory publishes the queue once the
outermost transaction commits and drops it on rollback — a task never runs for a row
that was not committed, and a commit never waits on the broker inside its transaction.
This is the pattern of pypi/warehouse (an ``after_commit`` hook flushing messages
queued during the request); SQLAlchemy's ``SessionEvents.after_commit`` is documented
to run after the commit, outside any transaction.

A publish that fails (broker down, process killed before the listener ran) leaves the
committed row pending; the outbox sweeper publishes it again (``services.sweeps``).
Tasks are idempotent, so a message published twice is harmless. A session factory
without a listener (code run in-process by a test or a CLI) publishes nothing.
"""
from __future__ import annotations

import logging
from typing import Protocol

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
_QUEUED = "gpubill.after_commit"  # Session.info key: messages queued by this transaction


class Publish(Protocol):
    """Publishes ``task_name(*args)`` now; False (logged) when the broker did not take it
    (``base.queues.enqueue`` bound to a producer)."""

    def __call__(self, task_name: str, *args: str, countdown: float | None = None) -> bool: ...


def publish_after_commit(session: Session, task_name: str, *args: str, countdown: float | None = None) -> None:
    """Queue ``task_name(*args)`` (ids only) to be published when ``session``'s
    transaction commits; dropped if it rolls back."""
    session.info.setdefault(_QUEUED, []).append((task_name, args, countdown))


def queued(session: Session) -> list[tuple[str, tuple[str, ...], float | None]]:
    """The messages ``session`` will publish at commit (for tests and diagnostics)."""
    return list(session.info.get(_QUEUED, []))


def install(factory: sessionmaker[Session], publish: Publish) -> None:
    """Publish with ``publish`` what sessions of ``factory`` queued, after each commit."""

    def flush(session: Session) -> None:
        for task_name, args, countdown in session.info.pop(_QUEUED, []):
            try:
                publish(task_name, *args, countdown=countdown)
            except Exception:  # never fail a commit that happened; the sweeper has the row
                log.exception("publishing %s%s after commit failed", task_name, args)

    def drop(session: Session) -> None:
        session.info.pop(_QUEUED, None)

    event.listen(factory, "after_commit", flush)
    event.listen(factory, "after_rollback", drop)

