"""RunPod status tasks (queue ``gpu_status``): re-fetch /status and settle.

A stray found by a callback has its cancel published by ``runpod_jobs.claim``'s
transaction (``base.after_commit``); nothing here publishes. A refresh coalesced into a
later one is ``self.retry`` (Celery's own re-scheduling), not a publish.
"""
from __future__ import annotations

import logging

from sqlalchemy.exc import OperationalError

from base import queues
from gateways.runpod import RunPodRejected, RunPodTransient
from services import runpod_jobs, settlement
from worker import context
from worker.app import app
from worker.tasks import MAX_RETRIES, backoff

log = logging.getLogger(__name__)


@app.task(name=queues.REFRESH_STATUS, bind=True, max_retries=MAX_RETRIES)
def refresh(self, job_id: str, claimed: str | None = None) -> str | None:
    """Fetch RunPod ``/status`` for a running job and apply it (capture on COMPLETED,
    release on FAILED / TIMED_OUT / CANCELLED / 404). The webhook body is never used
    for money: this re-fetch is. ``claimed``: the RunPod id a callback named — adopted
    by a job whose /run answer was lost, else a stray to cancel (``runpod_jobs.claim``).
    /status reads of one job are throttled to one per ``GPUBILL_RUNPOD_COALESCE_S``
    (``settlement.plan_refresh``): the first refresh reads at once, later ones in
    its window cost one more read at the window's end, together.
    A ``claimed`` id we never recorded is first looked up on RunPod: one RunPod does not
    know (404) is never adopted — a forged or mistaken callback must not make a held job
    take it (the job would then end ``lost``) — but is still recorded as a stray: RunPod
    may have run it for us and forgotten it since (``_claim``)."""
    try:
        # First delivery: read now, or once at the open window's end, or not at all
        # when a read already scheduled will see what this callback announced. A
        # retry is that scheduled read (or a wait for the dispatch): it reads.
        window = 0.0 if self.request.retries else context.settings().runpod_coalesce_s
        plan = _plan(job_id, claimed, window)
        if plan is None:
            return None
        where, delay = plan
        if delay > 0:
            raise self.retry(countdown=delay)
        return settlement.settle_from_runpod(context.sessions(), job_id, context.runpod(), where)
    except settlement.NotDispatchedYet as exc:
        raise self.retry(exc=exc, countdown=1)
    except (RunPodTransient, OperationalError) as exc:
        # Still running on RunPod's side; the beat poller picks it up if retries run out.
        raise self.retry(exc=exc, countdown=backoff(self.request.retries))
    except RunPodRejected:
        return None  # e.g. a revoked key: the poller retries later, an operator is alerted


def _plan(job_id: str, claimed: str | None, window: float) -> tuple[tuple[str, str], float] | None:
    """``settlement.plan_refresh``, with the RunPod id a callback named recorded first
    when it is news (``_claim``). A held job may be waiting for it (its /run answer was
    lost): it adopts the id, then is planned again. An id the job has recorded by now —
    a fast job's callback that beat ``record_dispatch`` to the receiver — costs no claim
    transaction when the refresh reads (issue 17); a throttled one still claims, as before."""
    try:
        plan = settlement.plan_refresh(context.sessions(), job_id, window)
    except settlement.NotDispatchedYet:
        if not claimed:
            raise
        _claim(job_id, claimed)
        return settlement.plan_refresh(context.sessions(), job_id, window)
    if claimed and (plan is None or plan[0][1] != claimed):
        _claim(job_id, claimed)  # a stray of a running or ended job, or one a read covers
    return plan


def _claim(job_id: str, claimed: str) -> None:
    """Record the RunPod id a callback named (``runpod_jobs.claim``): a known id costs
    one read; a new one is looked up on RunPod first, then adopted by a held job or
    recorded as a stray whose cancel is published. On RunPod's 404 it is never adopted
    but still recorded as a stray: the callback's token is ours, so the id is most
    likely a lost /run answer's job that RunPod ran and forgot before we read it
    (results are kept 30 min: a long worker outage), and its GPU time must stay on our
    books (settled with RunPod's 404, time unknown). A forged id costs one stray row and
    three RunPod calls (this lookup, the stray's /cancel and /status), and moves no money."""
    outcome = runpod_jobs.claim(context.sessions(), job_id, claimed, checked=False)
    if outcome != runpod_jobs.UNCHECKED:
        return
    endpoint_id = settlement.endpoint_of(context.sessions(), job_id)
    known = _runpod_knows(endpoint_id, claimed)
    if not known:
        log.warning("job %s: a callback names RunPod job %s, which RunPod does not know (forgotten, "
                    "or not ours): recorded as a stray, not adopted", job_id, claimed)
    # A stray's cancel is published at commit.
    runpod_jobs.claim(context.sessions(), job_id, claimed, checked=True, adoptable=known)


def _runpod_knows(endpoint_id: str, runpod_job_id: str) -> bool:
    """False only when RunPod answers that it has no such job (404). An error is no
    answer: the id is then recorded as before (adopted or a stray to cancel), because
    the record must not wait on a retry a SIGKILL could lose (the simulation, seed 3)."""
    try:
        return context.runpod().status(endpoint_id, runpod_job_id) is not None
    except (RunPodTransient, RunPodRejected):
        return True

