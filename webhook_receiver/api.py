"""The app's ``/v1`` API: submit (idempotently), quote, cancel and read jobs, read
wallets. Bearer API key required.

Money fields are int credits; GPU-seconds and prices are decimal strings; RunPod
timings are integer milliseconds.
"""
from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import defer

from base import queues
from base.after_commit import publish_after_commit
from ledger.db import transaction
from ledger.jobs import new_job, receipt, request_cancel
from ledger.models import Job, JobStatus, Wallet
from pricing import JobParams, Quote, QuoteError, quote, quote_body
from webhook_receiver import idempotency, resources
from webhook_receiver.auth import require_api_key
from webhook_receiver.errors import ApiError, error_body
from webhook_receiver.schemas import JobRequest, QuoteRequest, check_user_id, parse_json
from webhook_receiver.tokens import webhook_token

bp = Blueprint("api", __name__, url_prefix="/v1")



def _priced(job_type: str, params: JobParams) -> Quote:
    try:
        return quote(job_type, params)
    except QuoteError as err:
        raise ApiError(422, "invalid_request", str(err),
                       [{"field": f"params.{err.field}", "message": str(err)}]) from None


def wallet_body(user_id: str, wallet: Wallet | None) -> dict[str, Any]:
    if wallet is None:
        return {"user_id": user_id, "balance": 0, "held": 0, "available": 0, "status": "active"}
    return {"user_id": user_id, "balance": wallet.balance, "held": wallet.held,
            "available": wallet.available, "status": wallet.status}


def subscriptions_body(s: Any, user_id: str) -> list[dict[str, Any]]:
    """The wallet's Stripe subscriptions: ``[{id, plan, status, current_period_end}]``
    (period end ISO UTC or null), most recent first (``ledger.subscriptions``)."""
    from ledger import subscriptions

    return [{"id": r.id, "plan": r.plan, "status": r.status,
             "current_period_end": r.current_period_end.isoformat() + "Z" if r.current_period_end else None}
            for r in subscriptions.of_wallet(s, user_id)]


@bp.post("/jobs")
@require_api_key
def create_job():
    """Store a job request (``requested``) with its quote, then enqueue its hold.

    202 ``{job_id, status, quote}``; 402 when the quote obviously exceeds the wallet's
    available credits (no job stored); 422 on invalid input. The worker's conditional
    hold is the authoritative funds check. With ``Idempotency-Key`` the first answer
    (202 or 402) is stored and replayed for the same body; another body → 409
    (``webhook_receiver.idempotency``).
    """
    key = idempotency.request_key()
    req: JobRequest = parse_json(JobRequest)
    q = _priced(req.type, req.params)
    cfg = current_app.config["GPUBILL"]
    job_id = f"job_{uuid.uuid4().hex}"
    with transaction(resources.sessions()) as s:
        wallet = s.get(Wallet, req.user_id)
        available = wallet.available if wallet is not None else 0
        funded = q.hold_credits <= available
        answer = idempotency.Answer(202, {"job_id": job_id, "status": JobStatus.REQUESTED,
                                          "quote": quote_body(q)}) if funded else idempotency.Answer(
            402, error_body("insufficient_funds",
                            f"job needs a hold of {q.hold_credits} credits; {available} available"))
        if key is not None:
            first = idempotency.claim(s, key, idempotency.body_hash(request.get_json()), answer,
                                      job_id if funded else None)
            if first is not None:  # a replay: store nothing more, answer as the first time
                g.log_job_id = first.body.get("job_id")
                return idempotency.replayed(first)
        if funded:
            s.add(new_job(
                job_id=job_id, user_id=req.user_id, job_type=req.type,
                params=req.params.model_dump(mode="json", exclude_none=True), job_input=req.input,
                quote=q, webhook_token=webhook_token(cfg.runpod_token_secret.get_secret_value(), job_id),
            ))
            publish_after_commit(s, queues.DISPATCH, job_id)  # holds, then /run; the sweeper covers a lost publish
    if funded:
        g.log_job_id = job_id  # for the request's log line (webhook_receiver.logcontext)
    return jsonify(answer.body), answer.status


@bp.post("/quotes")
@require_api_key
def create_quote():
    """Price preview for ``{type, params}`` by the rate card in force: 200 ``{type,
    estimated_gpu_seconds, hold, max_gpu_seconds (funded), price_per_gpu_second,
    min_charge, ratecard_version}``; 422 on invalid input. Stores nothing."""
    req: QuoteRequest = parse_json(QuoteRequest)
    return jsonify({"type": req.type, **quote_body(_priced(req.type, req.params))})


@bp.post("/jobs/<job_id>/cancel")
@require_api_key
def cancel_job(job_id: str):
    """Ask to cancel a job: 202 with its receipt; the worker (``jobs.cancel``) releases a
    job not yet on RunPod, or stops it with RunPod ``/cancel`` and settles it by the rate
    card's cancel policy. 404 unknown job; 409 ``job_finished`` when it already ended.
    Asking again while it is being cancelled changes nothing."""
    with transaction(resources.sessions()) as s:
        # ``input`` deferred: a poison job's input may not even load (issue 11).
        job = s.get(Job, job_id[:40], with_for_update=True, options=[defer(Job.input)])
        if job is None:
            raise ApiError(404, "not_found", f"no job {job_id}")
        if not request_cancel(job):
            raise ApiError(409, "job_finished", f"job {job.id} already ended: {job.status}")
        body = receipt(job)
        publish_after_commit(s, queues.CANCEL, job.id)  # the sweeper covers a lost publish
    return jsonify(body), 202


@bp.get("/jobs/<job_id>")
@require_api_key
def get_job(job_id: str):
    """The job's status and receipt; 404 for an unknown id."""
    with transaction(resources.sessions()) as s:
        job = s.get(Job, job_id[:40])
        if job is None:
            raise ApiError(404, "not_found", f"no job {job_id}")
        return jsonify(receipt(job))


@bp.get("/wallets/<user_id>")
@require_api_key
def get_wallet(user_id: str):
    """``{user_id, balance, held, available, status}`` in credits; unknown user → zeros."""
    check_user_id(user_id)
    with transaction(resources.sessions()) as s:
        wallet = s.scalars(select(Wallet).where(Wallet.user_id == user_id)).one_or_none()
        body = wallet_body(user_id, wallet)
        if subs := subscriptions_body(s, user_id):  # only for subscribers: the body stays as it was
            body["subscriptions"] = subs
        return jsonify(body)
