"""Nightly reconciliation (queue ``maintenance``), scheduled by beat at
``GPUBILL_RECONCILE_HOUR``:``GPUBILL_RECONCILE_MINUTE`` UTC."""
from __future__ import annotations

from base import queues
from ledger.models import utcnow
from ledger.reconcile_runs import nightly, nightly_key
from worker import context
from worker.app import app

# A whole-ledger pass can outlast the default task limits; both stay below the
# broker's visibility timeout so Redis never redelivers a run still in progress.
SOFT_LIMIT_S, HARD_LIMIT_S = 1800, 1900


@app.task(name=queues.RECONCILE, soft_time_limit=SOFT_LIMIT_S, time_limit=HARD_LIMIT_S)
def reconcile(run_key: str | None = None) -> str:
    """Reconcile the whole ledger once per ``run_key`` (default ``nightly:{UTC date}``)
    and record the run in ``reconcile_runs``. Returns ``clean``, ``violations``,
    ``done`` (already ran) or ``locked`` (another run in progress)."""
    key = run_key or nightly_key(utcnow().date())
    return nightly(context.sessions(), key, context.settings().reconcile_lease_s)
