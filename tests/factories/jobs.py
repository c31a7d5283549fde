"""Jobs in each lifecycle state, made as the code makes them: the row by
``ledger.jobs.new_job`` with the rate card's quote (as ``POST /v1/jobs``), then the
worker's own steps — ``services.lifecycle.place_hold`` (the hold, through the ledger),
``record_dispatch`` (billed RunPod id), ``apply_status`` with a RunPod ``/status`` body
(IN_PROGRESS, or a terminal status that captures/releases through the ledger).

``JobFactory.create(sessions=s, status="completed", execution_ms=9_400)`` → the ``Job``
(detached, loaded) in ``status``. States: requested, held, rejected (the wallet cannot
cover the hold), cancelled (cancelled before its hold), dispatched, in_progress,
completed, failed, timed_out, lost (RunPod answered 404). Without ``user_id`` the job's
wallet is a ``FundedWalletFactory`` of 1000 credits. ``quiet=True`` moves the status
poller's schedule an hour ahead so a stack running in the same database leaves a
running job alone. ``token_secret`` (the stack's ``runpod_token_secret``) makes the
job's webhook token the one the receiver accepts (``/webhooks/runpod/<token>``).
"""
from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import factory
from sqlalchemy.orm import Session, sessionmaker

from ledger.db import transaction
from ledger.jobs import new_job, request_cancel
from ledger.models import Job, JobStatus, utcnow
from pricing import JobParams, quote
from services import lifecycle
from tests.factories.ledger import FundedWalletFactory, LedgerFactory
from webhook_receiver.tokens import webhook_token

# RunPod /status bodies that end a running job (https://docs.runpod.io/serverless/endpoints/job-states)
_RUNPOD_TERMINAL = {JobStatus.COMPLETED: "COMPLETED", JobStatus.FAILED: "FAILED",
                    JobStatus.TIMED_OUT: "TIMED_OUT"}
_AFTER_HOLD = (JobStatus.DISPATCHED, JobStatus.IN_PROGRESS, JobStatus.LOST, *_RUNPOD_TERMINAL)


def _quote(o: Any) -> Any:
    return quote(o.job_type, JobParams(**{"resolution": "1080p", **o.params}))


class JobFactory(LedgerFactory):
    class Meta:
        model = Job

    id = factory.LazyFunction(lambda: f"job_{secrets.token_hex(16)}")
    user_id: str | None = None
    job_type = "framing"
    params = factory.LazyFunction(lambda: {"duration_s": 30})
    job_input = factory.LazyFunction(dict)
    quote = factory.LazyAttribute(_quote)
    token_secret: str | None = None  # the stack's RunPod token secret: the job's real callback token
    webhook_token = factory.LazyAttribute(
        lambda o: webhook_token(o.token_secret, o.id) if o.token_secret else secrets.token_hex(32))
    status = JobStatus.REQUESTED
    runpod_job_id = factory.LazyAttribute(lambda o: f"rp-{o.id}")
    execution_ms = 3000  # RunPod executionTime of a terminal status
    delay_ms = 10        # RunPod delayTime
    output = factory.LazyFunction(dict)
    quiet = False

    @classmethod
    def _build(cls, model_class: type, *args: Any, **kw: Any) -> Job:
        return new_job(job_id=kw["id"], user_id=kw["user_id"] or "u-unsaved", job_type=kw["job_type"],
                       params=kw["params"], job_input=kw["job_input"], quote=kw["quote"],
                       webhook_token=kw["webhook_token"])

    @classmethod
    def _write(cls, sessions: sessionmaker[Session], **kw: Any) -> Job:
        if kw["user_id"] is None:
            kw["user_id"] = FundedWalletFactory.create(sessions=sessions).user_id
        job_id, status = kw["id"], kw["status"]
        with transaction(sessions) as s:
            job = cls._build(Job, **kw)
            s.add(job)
            if status == JobStatus.CANCELLED:
                request_cancel(job)
        if status != JobStatus.REQUESTED:
            held = lifecycle.place_hold(sessions, job_id)
            assert held == (status not in (JobStatus.REJECTED, JobStatus.CANCELLED)), f"{job_id} not held"
        if status in _AFTER_HOLD:
            assert lifecycle.record_dispatch(sessions, job_id, kw["runpod_job_id"])
        if status == JobStatus.IN_PROGRESS:
            lifecycle.apply_status(sessions, job_id, {"status": "IN_PROGRESS", "delayTime": kw["delay_ms"]})
        elif status == JobStatus.LOST:
            lifecycle.apply_status(sessions, job_id, None)
        elif status in _RUNPOD_TERMINAL:
            lifecycle.apply_status(sessions, job_id, {
                "status": _RUNPOD_TERMINAL[status], "executionTime": kw["execution_ms"],
                "delayTime": kw["delay_ms"], "output": kw["output"]})
        with transaction(sessions) as s:
            job = s.get_one(Job, job_id)
            if kw["quiet"]:
                job.last_checked_at = job.next_poll_at = utcnow() + timedelta(hours=1)
            assert job.status == status, f"{job_id}: {job.status}, wanted {status}"
            return job


__all__ = ["JobFactory"]
