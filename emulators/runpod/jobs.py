"""One RunPod stand-in job's record and its ``GET /status`` body.

Times are ``time.monotonic`` seconds (``received_wall``/``webhook_sent_wall``: epoch
seconds); reported durations are measured integer milliseconds, never planned values.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .plan import Plan

# RunPod /status `status` values that never change again.
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})


@dataclass(eq=False)
class JobRecord:
    """A job /run accepted: its request, plan, measured lifecycle and stand-in-only
    counters (see ``Engine.ground_truth``)."""

    id: str
    endpoint_id: str
    input: dict[str, Any]
    webhook: str | None
    execution_timeout_ms: int
    ttl_ms: int
    plan: Plan
    submitted_at: float
    status: str = "IN_QUEUE"
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    output: Any = None
    error: str | None = None
    wake: threading.Event = field(default_factory=threading.Event)  # cancel or shutdown
    deleted_at: float | None = None  # RunPod forgot it (ttl or result retention)

    status_calls: int = 0
    cancel_calls: int = 0
    # Stand-in only, for latency measurements: wall-clock (epoch s) /run arrival and
    # the first completion-webhook send.
    received_wall: float = field(default_factory=time.time)
    webhook_sent_wall: float | None = None
    # Stand-in only, ground truth for tests (``Engine.ground_truth``): completion-webhook
    # POSTs made, and deliveries (one per copy) still sending or waiting to retry.
    webhook_attempts: int = 0
    webhook_pending: int = 0

    def forget_at(self, retention_s: float) -> float:
        # RunPod: ttl bounds the job's whole life from submission; results of a finished
        # job are kept for the retention period (docs "Send API requests").
        ttl_end = self.submitted_at + self.ttl_ms / 1000
        if self.plan.forget_after_s is not None:
            ttl_end = min(ttl_end, self.submitted_at + self.plan.forget_after_s)
        if self.finished_at is None:
            return ttl_end
        return min(ttl_end, self.finished_at + retention_s)


def status_body(job: JobRecord) -> dict[str, Any]:
    """RunPod ``GET /status`` body: ``{"id", "status", "delayTime"?, "executionTime"?,
    "workerId"?, "output"?, "error"?}`` (times in integer ms, present once known)."""
    body: dict[str, Any] = {"id": job.id, "status": job.status}
    if job.started_at is not None:
        body["delayTime"] = to_ms(job.started_at - job.submitted_at)
    elif job.finished_at is not None:  # cancelled while queued: its whole life was delay
        body["delayTime"] = to_ms(job.finished_at - job.submitted_at)
    if job.finished_at is not None:
        body["executionTime"] = (to_ms(job.finished_at - job.started_at)
                                 if job.started_at is not None else 0)
    if job.worker_id is not None:
        body["workerId"] = job.worker_id
    if job.status == "COMPLETED":
        body["output"] = job.output
    if job.error is not None:
        body["error"] = job.error
    return body


def to_ms(seconds: float) -> int:
    """Seconds → integer milliseconds (rounded)."""
    return int(round(seconds * 1000))




def truth_row(job: JobRecord, now: float) -> dict[str, Any]:
    """One ``Engine.ground_truth`` entry for ``job`` at monotonic time ``now`` (see there)."""
    executed = 0
    if job.started_at is not None:
        end = job.finished_at or job.deleted_at or now
        executed = to_ms(end - job.started_at)
    return {"id": job.id, "endpoint_id": job.endpoint_id, "input": job.input,
            "webhook": job.webhook,
            "policy": {"executionTimeout": job.execution_timeout_ms, "ttl": job.ttl_ms},
            "state": job.status, "deleted": job.deleted_at is not None,
            "delay_ms": status_body(job).get("delayTime"), "executed_ms": executed,
            "status_calls": job.status_calls,
            "webhook_attempts": job.webhook_attempts,
            "webhook_pending": job.webhook_pending}
