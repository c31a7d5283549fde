"""``POST /webhooks/runpod/{token}``: RunPod completion callbacks.

RunPod does not sign webhooks; the per-job HMAC token in the URL authenticates it. The
body is never trusted for money — not even for which job it is about: the token names
the job, and a valid token only enqueues a ``/status`` re-fetch of *that* job. A body
naming another RunPod job is logged; the worker looks that id up and records it (adopted
by a job whose /run answer was lost, else a stray to cancel), never billing from the
body. Unknown token → 404 and nothing happens. The re-fetch is queued with
``publish_after_commit`` in the (read-only) transaction that found the job, and goes out
when it ends, as every view's task does.
"""
from __future__ import annotations

import logging
import re

from flask import Blueprint, jsonify, request
from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from base import queues
from base.after_commit import publish_after_commit
from ledger.db import transaction
from ledger.models import Job, JobStatus
from webhook_receiver import resources
from webhook_receiver.errors import ApiError

log = logging.getLogger(__name__)
bp = Blueprint("runpod_webhooks", __name__)
_TOKEN = re.compile(r"^[0-9a-f]{64}$")
# RunPod job ids: a UUID, optionally with a worker suffix ("…-u1") or a "sync-" prefix.
_RUNPOD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


@bp.post("/webhooks/runpod/<token>")
def receive(token: str):
    if not _TOKEN.match(token):
        raise ApiError(404, "not_found", "unknown webhook")
    body = request.get_json(silent=True)
    with transaction(resources.sessions()) as s:
        row = s.execute(select(Job.id, Job.status, Job.runpod_job_id)
                        .where(Job.webhook_token == token)).one_or_none()
        if row is None:
            raise ApiError(404, "not_found", "unknown webhook")
        _refetch(s, row, body.get("id") if isinstance(body, dict) else None)
    return jsonify({"received": True}), 200


def _refetch(s: Session, row: Row[str, str, str | None], claimed: object) -> None:
    """Queue ``gpu_status.refresh`` for the job ``row`` (id, status, RunPod id) names,
    with ``claimed`` (the RunPod id the body names) when it is a plausible id (letters,
    digits, ``-`` and ``_``, at most 100) other than the billed one the job has recorded."""
    if row.runpod_job_id and claimed is not None and claimed != row.runpod_job_id:
        log.warning("RunPod webhook for job %s names RunPod job %r, not %s; re-fetching %s only",
                    row.id, claimed, row.runpod_job_id, row.id)
    if not (isinstance(claimed, str) and _RUNPOD_ID.match(claimed)) or claimed == row.runpod_job_id:
        claimed = None  # nothing to claim: the billed id is recorded already (one transaction less)
    if row.status == JobStatus.HELD or row.status in JobStatus.RUNNING:
        publish_after_commit(s, queues.REFRESH_STATUS, row.id, *([claimed] if claimed else []))
    elif claimed:
        # Issue 11: a RunPod job for an ended job of ours that is not the billed one —
        # the worker records it and cancels it (resources.runpod_jobs.claim).
        publish_after_commit(s, queues.REFRESH_STATUS, row.id, claimed)
