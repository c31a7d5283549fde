"""Periodic tasks (queue ``maintenance``), scheduled by the single beat.

These publish directly (``context.publish``), not with ``publish_after_commit``: what
they publish is not made due by their own commit — the rows were committed long ago
(the outbox sweeper re-publishes a lost publish; its backoff update only rate-limits
the next hand-out) or are only due by the clock (a silent job's poll, an expired hold).
A publish lost here is found again by the next scan.
"""
from __future__ import annotations

from base import queues
from services import sweeps
from worker import context
from worker.app import app


@app.task(name=queues.POLL_SILENT)
def poll_silent() -> int:
    """Enqueue a status refresh for each running job RunPod has been silent about
    (backing off per job: ``GPUBILL_SILENT_AFTER_S`` × 2ⁿ, at most
    ``GPUBILL_POLL_MAX_INTERVAL_S``)."""
    cfg = context.settings()
    ids = sweeps.silent_jobs(context.sessions(), cfg.silent_after_s, cfg.poll_max_interval_s)
    return sum(context.publish(queues.REFRESH_STATUS, jid) for jid in ids)


@app.task(name=queues.SWEEP_OUTBOX)
def sweep_outbox() -> int:
    """Outbox safety net: enqueue again every row whose task never ran (the
    ``services.outbox.Outbox`` entries in ``services.sweeps.REGISTRY``)."""
    cfg = context.settings()
    work = sweeps.pending_outbox(context.sessions(), cfg.outbox_after_s)
    return sum(context.publish(name, *args) for name, *args in work)


@app.task(name=queues.SWEEP_EXPIRED)
def sweep_expired() -> int:
    """Enqueue the expiry of every job whose hold ran past ``expires_at`` (DB time)."""
    ids = sweeps.expired_holds(context.sessions())
    return sum(context.publish(queues.EXPIRE, jid) for jid in ids)
