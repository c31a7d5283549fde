"""``gpubill events list|replay``: stored Stripe events and re-enqueueing them.

Replay commits (a parked event is set back to ``received``), so its publishes go out
after that commit (``base.after_commit``), as every view's and service's do.

Replay is safe for any event: processing is idempotent, so an applied (``processed`` /
``ignored``) event changes nothing when replayed; a parked (``failed``) one is set back
to ``received`` (attempts reset, last error kept until it is processed) and applied.
"""
from __future__ import annotations

import functools

import click
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gpubill.commands import ledger_sessions, table


def replay_events(factory: sessionmaker[Session], *, failed: bool = False,
                  event_ids: tuple[str, ...] = ()) -> list[str]:
    """Re-enqueue stored events; returns their ids (``evt_…``).

    ``event_ids``: exactly those (any status); else every ``received`` event, plus every
    ``failed`` one with ``failed``. Parked events are reset to ``received``; each
    ``stripe.process_event`` is queued with ``publish_after_commit`` and goes out when
    that reset commits (``factory`` needs the listener: ``base.after_commit.install``).
    Raises ``LookupError`` naming an unknown id (nothing reset, nothing published).
    """
    from base import queues
    from base.after_commit import publish_after_commit
    from ledger.db import transaction
    from ledger.models import EventStatus, StripeEvent

    with transaction(factory) as s:
        if event_ids:
            found = [s.get(StripeEvent, i, with_for_update=True) for i in event_ids]
            missing = [i for i, r in zip(event_ids, found, strict=True) if r is None]
            if missing:
                raise LookupError(f"no stored event {', '.join(missing)}")
            rows = [r for r in found if r is not None]
        else:
            statuses = [EventStatus.RECEIVED] + ([EventStatus.FAILED] if failed else [])
            rows = list(s.scalars(select(StripeEvent).where(StripeEvent.status.in_(statuses))
                                  .order_by(StripeEvent.received_at).with_for_update()))
        for row in rows:
            if row.status == EventStatus.FAILED:
                row.status, row.attempts = EventStatus.RECEIVED, 0
        ids = [row.id for row in rows]
        for event_id in ids:
            publish_after_commit(s, queues.PROCESS_STRIPE_EVENT, event_id)
    return ids


@click.group()
def events() -> None:
    """Stored Stripe webhook events."""


@events.command("list")
@click.option("--status", type=click.Choice(["received", "processed", "ignored", "failed"]))
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
def list_events(status: str | None, limit: int) -> None:
    """The newest stored events with status, attempts and last error."""
    from ledger.db import transaction
    from ledger.models import StripeEvent

    with transaction(ledger_sessions()) as s:
        q = select(StripeEvent).order_by(StripeEvent.received_at.desc()).limit(limit)
        if status:
            q = q.where(StripeEvent.status == status)
        rows = [(e.id, e.type, e.status, str(e.attempts), (e.last_error or "")[:60])
                for e in s.scalars(q)]
    click.echo(table(rows, ("event", "type", "status", "attempts", "last error")))


@events.command("replay")
@click.option("--failed", is_flag=True, help="Also replay parked (failed) events.")
@click.option("--id", "event_ids", multiple=True, metavar="evt_...", help="Replay this event (repeatable).")
def replay(failed: bool, event_ids: tuple[str, ...]) -> None:
    """Re-enqueue stored events: those still received (default), parked ones too
    (--failed), or the given ids. Replaying an applied event changes nothing."""
    from base import after_commit, queues
    from base.settings import get_settings
    from ledger.db import make_engine, make_sessionmaker

    cfg = get_settings()
    if not cfg.broker_url:
        raise click.ClickException(f"GPUBILL_BROKER_URL is not set and no running `gpubill up` in {cfg.data_dir}")
    producer = queues.producer(cfg.broker_url)
    engine = make_engine(cfg.sqlalchemy_url)  # a factory of its own: the listener is this command's
    factory = make_sessionmaker(engine)
    after_commit.install(factory, functools.partial(queues.enqueue, producer))
    try:
        ids = replay_events(factory, failed=failed, event_ids=event_ids)
    except LookupError as err:
        raise click.ClickException(str(err)) from None
    finally:
        producer.close()
        engine.dispose()
    for event_id in ids:
        click.echo(event_id)
    click.echo(f"{len(ids)} event(s) re-enqueued")
