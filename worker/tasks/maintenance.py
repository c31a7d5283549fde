"""Periodic tasks (queue ``maintenance``), scheduled by the single beat."""
from __future__ import annotations

from gpubill import queues
from worker import context, sweeps
from worker.app import app


@app.task(name=queues.POLL_SILENT)
def poll_silent() -> int:
    """Enqueue a status refresh for each running job RunPod has been silent about."""
    cfg = context.settings()
    ids = sweeps.silent_jobs(context.sessions(), cfg.silent_after_s)
    return sum(context.publish(queues.REFRESH_STATUS, jid) for jid in ids)


@app.task(name=queues.SWEEP_OUTBOX)
def sweep_outbox() -> int:
    """Outbox safety net: enqueue again every row whose task never ran."""
    cfg = context.settings()
    work = sweeps.pending_outbox(context.sessions(), cfg.outbox_after_s)
    return sum(context.publish(name, rid) for name, rid in work)
