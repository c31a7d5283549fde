"""Job tasks (queue ``jobs``): hold and dispatch to RunPod, cancel, expire.

A new job is one ``jobs.dispatch``: its hold and its dispatch intent commit together,
then /run (issue 17: one task fewer per job). ``jobs.place_hold`` stays for messages
published before that change. Follow-up work is published by the services, in the
transaction that makes it due (``base.after_commit``): a hold's dispatch (``lifecycle.place_hold``), a stray's cancel
(``runpod_jobs.record_stray``), a terminal job's notification. No task here publishes.
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import OperationalError

from base import queues
from gateways.runpod import RunPodRejected, RunPodTransient
from services import lifecycle, poison, runpod_jobs, stops
from worker import context
from worker.app import app
from worker.tasks import MAX_RETRIES, backoff

log = logging.getLogger(__name__)


@app.task(name=queues.PLACE_HOLD, bind=True, max_retries=MAX_RETRIES)
def place_hold(self, job_id: str) -> None:
    """Hold the job's quote; on success the service publishes its dispatch at commit.
    Only messages published before issue 17 name this task (``dispatch`` holds now)."""
    try:
        lifecycle.place_hold(context.sessions(), job_id)
    except OperationalError as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries))
    except Exception as exc:  # noqa: BLE001 - unclassified: a poison job, parked at the bound
        _poisoned(job_id, exc)


@app.task(name=queues.DISPATCH, bind=True, max_retries=MAX_RETRIES)
def dispatch(self, job_id: str) -> None:
    """Hold a requested job's quote and start it on RunPod (``lifecycle.dispatch_order``:
    a wallet that cannot cover it ends the job ``rejected``, and nothing is sent); a job
    already held is just started. 429 / 5xx / timeouts retry with exponential backoff
    and full jitter, at most ``GPUBILL_DISPATCH_MAX_RETRIES`` times; a refusal (other
    4xx) or exhausted retries release the hold and fail the job with the reason."""
    cfg = context.settings()
    try:
        order = lifecycle.dispatch_order(context.sessions(), job_id, cfg.dispatch_max_retries + 1)
    except lifecycle.AttemptsExhausted as exc:
        # Re-publishes by the outbox sweeper count too: the bound is per job, not per chain.
        lifecycle.fail_before_run(context.sessions(), job_id, f"dispatch gave up after {exc}")
        return
    except OperationalError as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries))
    except Exception as exc:  # noqa: BLE001 - unclassified: a poison job, parked at the bound
        _poisoned(job_id, exc)
        return
    if order is None:
        return
    gateway = context.runpod()
    try:
        runpod_id = gateway.run(order.endpoint_id, order.job_input,
                                webhook_url=context.webhook_url(order.webhook_token),
                                execution_timeout_ms=order.execution_timeout_ms,
                                ttl_ms=order.ttl_ms)
    except RunPodTransient as exc:
        if self.request.retries >= cfg.dispatch_max_retries:
            lifecycle.fail_before_run(context.sessions(), job_id,
                                      f"dispatch gave up after {self.request.retries + 1} attempts: {exc}")
            return
        raise self.retry(exc=exc, countdown=backoff(self.request.retries, cfg.retry_backoff_s),
                         max_retries=cfg.dispatch_max_retries)
    except RunPodRejected as exc:
        lifecycle.fail_before_run(context.sessions(), job_id, f"RunPod refused dispatch: {exc}")
        return
    except Exception as exc:  # noqa: BLE001 - e.g. an answer we cannot parse; bounded like /run
        _poisoned(job_id, exc)
        return
    if not lifecycle.record_dispatch(context.sessions(), job_id, runpod_id):
        # The job moved on while /run was in flight: recorded as a stray, whose cancel
        # (published at that commit) stops the GPU work nobody pays for and writes it off.
        log.warning("job %s left 'held' during dispatch; cancelling RunPod job %s", job_id, runpod_id)


@app.task(name=queues.CANCEL_STRAY, bind=True, max_retries=MAX_RETRIES)
def cancel_stray(self, job_id: str, endpoint_id: str, runpod_job_id: str) -> None:
    """Cancel a stray RunPod job (recorded in ``runpod_jobs``), then record its measured
    time from ``/status`` as our loss. Transient RunPod errors retry with backoff."""
    try:
        status = _stop_and_fetch((endpoint_id, runpod_job_id))
        runpod_jobs.settle_stray(context.sessions(), runpod_job_id, status)
    except (RunPodTransient, OperationalError) as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries))
    except RunPodRejected:
        log.exception("job %s: RunPod refused to cancel stray %s; reconcile reports it",
                      job_id, runpod_job_id)


def _stop_and_fetch(where: tuple[str, str]) -> dict[str, Any] | None:
    """RunPod ``/cancel`` then ``/status`` (its timings); None when RunPod forgot the job."""
    gateway = context.runpod()
    gateway.cancel(*where)
    return gateway.status(*where)


@app.task(name=queues.CANCEL, bind=True, max_retries=MAX_RETRIES)
def cancel(self, job_id: str) -> str | None:
    """A user's cancel: a job not on RunPod yet is released now; a running one is
    stopped with RunPod ``/cancel`` and settled by the rate card's cancel policy."""
    try:
        where = stops.begin_cancel(context.sessions(), job_id)
        if where is None:
            return None
        return lifecycle.apply_status(context.sessions(), job_id, _stop_and_fetch(where))
    except (RunPodTransient, OperationalError) as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries))
    except RunPodRejected:
        log.exception("job %s: RunPod refused the cancel; the poller settles it", job_id)
        return None
    except Exception as exc:  # noqa: BLE001 - a poison job the user cancels ends now
        _poisoned(job_id, exc)
        return None


def _poisoned(job_id: str, exc: Exception) -> None:
    """Count an unclassified failure (``services.poison``); re-raise it (Celery records
    it, the outbox sweeper re-publishes) until the job is parked."""
    if not poison.note_failure(context.sessions(), job_id, exc, context.settings().dispatch_max_retries + 1):
        raise exc


@app.task(name=queues.EXPIRE, bind=True, max_retries=MAX_RETRIES)
def expire(self, job_id: str) -> str | None:
    """A hold past ``expires_at`` (DB time). RunPod's ``/status`` first: a job RunPod
    already ended is settled from it (``stops.settle_expired``); one still queued or
    running is cancelled, re-fetched, and settled from what RunPod then reports; one
    RunPod has forgotten (404) ends ``lost``, as the poller's 404 ends it."""
    try:
        where = stops.begin_expire(context.sessions(), job_id)
        if where is None:
            return None
        try:
            status = context.runpod().status(*where)
            if status is not None and str(status.get("status")) not in lifecycle.TERMINAL:
                status = _stop_and_fetch(where)
            forgotten = status is None  # RunPod's 404, before or after our cancel
        except RunPodRejected:
            status, forgotten = None, False  # still release: the hold has run out either way
        return stops.settle_expired(context.sessions(), job_id, status, forgotten=forgotten)
    except (RunPodTransient, OperationalError) as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries))
