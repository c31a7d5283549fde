"""One way to publish a task after the transaction that made it due commits.

``publish_after_commit(session, task_name, *args)`` queues the message on the session
(``Session.info``); a listener ``install``-ed on the process's session factory publishes
the queue once the **outermost** transaction commits and drops it when that transaction
ends without a commit (rollback, or a session closed mid-transaction) — a task never
runs for a row that was not committed, and a commit never waits on the broker inside
its transaction. This is the pattern of pypi/warehouse (tasks queued during the request,
sent by an after-commit hook) and of Django's ``transaction.on_commit``.

SQLAlchemy's ``SessionEvents.after_commit`` also fires when a SAVEPOINT
(``Session.begin_nested``) is released, not only at the real COMMIT, and
``after_rollback`` when one is rolled back (``SessionTransaction.commit``/``rollback``
dispatch them for ``nested`` transactions, sqlalchemy/orm/session.py). So: a savepoint's
release keeps its messages for the outer commit; a savepoint's rollback drops only the
messages queued inside it; only the root transaction's commit publishes
(``Session.get_nested_transaction`` is None there).

A publish that fails (broker down, process killed before the listener ran) is logged
and never fails the commit that already happened: the committed row stays pending and
the outbox sweeper publishes it again (``services.sweeps``). Tasks are idempotent, so a
message published twice is harmless. A session factory without a listener (code run
in-process by a test) publishes nothing; the sweeper covers that too.
"""
from __future__ import annotations

import logging
from typing import Protocol

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

log = logging.getLogger(__name__)
_QUEUED = "gpubill.after_commit"  # Session.info key: [(task_name, args, countdown)]
_MARKS = "gpubill.after_commit.savepoints"  # {open savepoint: len(queue) when it began}

Message = tuple[str, tuple[str, ...], float | None]


class Publish(Protocol):
    """Publishes ``task_name(*args)`` now (``countdown``: seconds before it is due);
    False (logged) when the broker did not take it (``base.queues.enqueue`` bound to a
    producer). May raise: the listener logs it."""

    def __call__(self, task_name: str, *args: str, countdown: float | None = None) -> bool: ...


def publish_after_commit(session: Session, task_name: str, *args: str, countdown: float | None = None) -> None:
    """Queue ``task_name(*args)`` (ids only) to be published when ``session``'s
    outermost transaction commits; dropped if it (or the savepoint it was queued in)
    rolls back. ``countdown``: seconds the message waits in the broker."""
    session.info.setdefault(_QUEUED, []).append((task_name, args, countdown))


def queued(session: Session) -> list[Message]:
    """The messages ``session`` will publish at commit (for tests and diagnostics)."""
    return list(session.info.get(_QUEUED, []))


def install(factory: sessionmaker[Session], publish: Publish) -> None:
    """Publish with ``publish`` what sessions of ``factory`` queued, after each commit
    of their outermost transaction. Install once per factory."""

    def begun(session: Session, transaction: SessionTransaction) -> None:
        if transaction.nested:
            session.info.setdefault(_MARKS, {})[transaction] = len(session.info.get(_QUEUED, ()))

    def committed(session: Session) -> None:
        savepoint = session.get_nested_transaction()
        if savepoint is not None:  # a RELEASE SAVEPOINT: its messages wait for the real commit
            session.info.get(_MARKS, {}).pop(savepoint, None)
            return
        for task_name, args, countdown in session.info.pop(_QUEUED, []):
            try:
                publish(task_name, *args, countdown=countdown)
            except Exception:  # never fail a commit that happened; the sweeper has the row
                log.exception("publishing %s%s after commit failed", task_name, args)

    def ended(session: Session, transaction: SessionTransaction) -> None:
        if transaction.nested:  # still marked: rolled back, drop what it queued
            mark = session.info.get(_MARKS, {}).pop(transaction, None)
            if mark is not None:
                del session.info.get(_QUEUED, [])[mark:]
        elif transaction.parent is None:  # the root ended; after a commit the queue is empty
            session.info.pop(_QUEUED, None)
            session.info.pop(_MARKS, None)

    event.listen(factory, "after_transaction_create", begun)
    event.listen(factory, "after_commit", committed)
    event.listen(factory, "after_transaction_end", ended)
