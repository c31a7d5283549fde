"""``POST /webhooks/runpod/{token}``: RunPod completion callbacks.

RunPod does not sign webhooks; the per-job HMAC token in the URL authenticates it. The
body is never trusted for money — not even for which job it is about: the token names
the job, and a valid token only enqueues a ``/status`` re-fetch of *that* job (a body
naming another RunPod job is logged and changes nothing else). Unknown token → 404 and
nothing happens.
"""
from __future__ import annotations

import logging
import re

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from base import queues
from ledger.db import transaction
from ledger.models import Job, JobStatus
from webhook_receiver import services
from webhook_receiver.errors import ApiError

log = logging.getLogger(__name__)
bp = Blueprint("runpod_webhooks", __name__)
_TOKEN = re.compile(r"^[0-9a-f]{64}$")


@bp.post("/webhooks/runpod/<token>")
def receive(token: str):
    if not _TOKEN.match(token):
        raise ApiError(404, "not_found", "unknown webhook")
    with transaction(services.sessions()) as s:
        row = s.execute(select(Job.id, Job.status, Job.runpod_job_id)
                        .where(Job.webhook_token == token)).one_or_none()
    if row is None:
        raise ApiError(404, "not_found", "unknown webhook")
    body = request.get_json(silent=True)
    claimed = body.get("id") if isinstance(body, dict) else None
    if row.runpod_job_id and claimed is not None and claimed != row.runpod_job_id:
        log.warning("RunPod webhook for job %s names RunPod job %r, not %s; re-fetching %s only",
                    row.id, claimed, row.runpod_job_id, row.id)
    if not (isinstance(claimed, str) and 0 < len(claimed) <= 100):
        claimed = None
    if row.status == JobStatus.HELD or row.status in JobStatus.RUNNING:
        services.publish(queues.REFRESH_STATUS, row.id, *([claimed] if claimed else []))
    elif claimed and claimed != row.runpod_job_id:
        # Issue 11: a RunPod job for an ended job of ours that is not the billed one —
        # the worker records it and cancels it (services.runpod_jobs.claim).
        services.publish(queues.REFRESH_STATUS, row.id, claimed)
    return jsonify({"received": True}), 200
