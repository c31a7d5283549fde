"""The app's ``/v1`` API: submit and read jobs, read wallets. Bearer API key required.

Money fields are int credits; GPU-seconds and prices are decimal strings; RunPod
timings are integer milliseconds.
"""
from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Any

from flask import Blueprint, current_app, jsonify
from sqlalchemy import select

from gpubill import queues
from ledger.db import transaction
from ledger.jobs import job_quote, new_job
from ledger.models import Job, JobStatus, Wallet
from pricing import Quote, QuoteError, quote
from webhook_receiver import services
from webhook_receiver.auth import require_api_key
from webhook_receiver.errors import ApiError
from webhook_receiver.schemas import USER_ID_PATTERN, JobRequest, parse_json
from webhook_receiver.tokens import webhook_token

bp = Blueprint("api", __name__, url_prefix="/v1")
_USER_ID = re.compile(USER_ID_PATTERN)


def quote_body(q: Quote) -> dict[str, Any]:
    return {
        "estimated_gpu_seconds": str(q.estimated_gpu_seconds),
        "hold": q.hold_credits,
        "max_gpu_seconds": q.max_gpu_seconds,
        "price_per_gpu_second": str(q.credits_per_gpu_second),
        "min_charge": q.min_charge,
        "ratecard_version": q.ratecard_version,
    }


def _ts(value: Any) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


def job_body(job: Job) -> dict[str, Any]:
    """The job and its receipt (GET /v1/jobs/{id})."""
    cost = job.runpod_cost_usd
    margin = None
    if cost is not None and job.charge is not None:
        margin = str(Decimal(job.charge) / 100 - cost)  # 1 credit = $0.01 list price
    return {
        "job_id": job.id, "user_id": job.user_id, "type": job.type, "status": job.status,
        "params": job.params,
        "quote": quote_body(job_quote(job)),
        "hold": job.hold_credits if job.hold_id is not None else 0,
        "runpod": {"job_id": job.runpod_job_id, "status": job.runpod_status,
                   "delay_ms": job.delay_ms, "execution_ms": job.execution_ms},
        "charge": job.charge, "released": job.released,
        "runpod_cost_usd": str(cost) if cost is not None else None, "margin_usd": margin,
        "output": job.output, "error": job.error,
        "created_at": _ts(job.created_at), "held_at": _ts(job.held_at),
        "dispatched_at": _ts(job.dispatched_at), "finished_at": _ts(job.finished_at),
    }


def wallet_body(user_id: str, wallet: Wallet | None) -> dict[str, Any]:
    if wallet is None:
        return {"user_id": user_id, "balance": 0, "held": 0, "available": 0, "status": "active"}
    return {"user_id": user_id, "balance": wallet.balance, "held": wallet.held,
            "available": wallet.available, "status": wallet.status}


@bp.post("/jobs")
@require_api_key
def create_job():  # type: ignore[no-untyped-def]
    """Store a job request (``requested``) with its quote, then enqueue its hold.

    202 ``{job_id, status, quote}``; 402 when the quote obviously exceeds the wallet's
    available credits (nothing stored); 422 on invalid input. The worker's conditional
    hold is the authoritative funds check.
    """
    req: JobRequest = parse_json(JobRequest)
    try:
        q = quote(req.type, req.params)
    except QuoteError as err:
        raise ApiError(422, "invalid_request", str(err),
                       [{"field": f"params.{err.field}", "message": str(err)}]) from None
    cfg = current_app.config["GPUBILL"]
    job_id = f"job_{uuid.uuid4().hex}"
    with transaction(services.sessions()) as s:
        wallet = s.get(Wallet, req.user_id)
        available = wallet.available if wallet is not None else 0
        if q.hold_credits > available:
            raise ApiError(402, "insufficient_funds",
                           f"job needs a hold of {q.hold_credits} credits; {available} available")
        s.add(new_job(
            job_id=job_id, user_id=req.user_id, job_type=req.type,
            params=req.params.model_dump(mode="json", exclude_none=True), job_input=req.input,
            quote=q, webhook_token=webhook_token(cfg.runpod_token_secret.get_secret_value(), job_id),
        ))
    services.publish(queues.PLACE_HOLD, job_id)  # after commit; the sweeper covers a failure
    return jsonify({"job_id": job_id, "status": JobStatus.REQUESTED, "quote": quote_body(q)}), 202


@bp.get("/jobs/<job_id>")
@require_api_key
def get_job(job_id: str):  # type: ignore[no-untyped-def]
    """The job's status and receipt; 404 for an unknown id."""
    with transaction(services.sessions()) as s:
        job = s.get(Job, job_id[:40])
        if job is None:
            raise ApiError(404, "not_found", f"no job {job_id}")
        return jsonify(job_body(job))


@bp.get("/wallets/<user_id>")
@require_api_key
def get_wallet(user_id: str):  # type: ignore[no-untyped-def]
    """``{user_id, balance, held, available, status}`` in credits; unknown user → zeros."""
    if not _USER_ID.match(user_id):
        raise ApiError(422, "invalid_request", "user_id must match " + USER_ID_PATTERN)
    with transaction(services.sessions()) as s:
        wallet = s.scalars(select(Wallet).where(Wallet.user_id == user_id)).one_or_none()
        return jsonify(wallet_body(user_id, wallet))
