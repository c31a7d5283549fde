"""In-memory RunPod serverless jobs: queueing, measured execution, cancel, expiry, webhooks.

No HTTP here; ``app.py`` maps RunPod's REST API onto ``Engine``. Each job gets one
daemon thread that waits out its queue delay, takes a worker slot of its endpoint
(``workers.py``), then "executes" by waiting on an event that cancel/shutdown can set
early. Reported times are measured with ``time.monotonic`` — never the planned values
(``plan.py``) — so callers see what RunPod would have billed for the wait they actually
got. Records and bodies: ``jobs.py``; completion webhooks: ``webhooks.py``.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from .config import EmulatorConfig
from .jobs import TERMINAL, JobRecord, status_body, truth_row
from .plan import ScriptedFailure, plan_job, run_errors
from .webhooks import Hook, WebhookSender
from .workers import WorkerSlots

log = logging.getLogger(__name__)


class UnknownEndpoint(LookupError):
    """The endpoint id is not configured and ``allow_any_endpoint`` is off."""


class Engine:
    """The job store. Thread-safe; every public method purges expired jobs first."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._jobs: dict[str, JobRecord] = {}
        self._workers: dict[str, WorkerSlots] = {}
        self._finished: dict[str, dict[str, int]] = {}  # endpoint -> {"completed", "failed"}
        self._threads: set[threading.Thread] = set()
        self._closing = threading.Event()
        self._run_calls: dict[str, int] = {}  # script key -> /run calls seen (run_errors)
        self._accepted: list[JobRecord] = []  # every job /run ever accepted, never purged
        self._webhooks = WebhookSender(config, self._lock, self._closing, self._spawn)

    # ------------------------------------------------------------------ public API

    def submit(self, endpoint_id: str, job_input: dict[str, Any], *, webhook: str | None = None,
               execution_timeout_ms: int | None = None, ttl_ms: int | None = None
               ) -> dict[str, Any]:
        """Queue a job (RunPod ``POST /run``); returns ``{"id", "status": "IN_QUEUE"}``.

        Timeouts in milliseconds, defaults from the config. Raises ``UnknownEndpoint``,
        ``ValueError`` (bad ``emulator`` overrides), ``RuntimeError`` after shutdown.
        """
        profile = self.config.profile(endpoint_id)
        if profile is None:
            raise UnknownEndpoint(endpoint_id)
        if self._closing.is_set():
            raise RuntimeError("the RunPod stand-in is shutting down")
        self._scripted_run_failure(job_input, webhook)
        job_id = str(uuid.uuid4())
        job = JobRecord(
            id=job_id, endpoint_id=endpoint_id, input=job_input, webhook=webhook,
            execution_timeout_ms=execution_timeout_ms or self.config.default_execution_timeout_ms,
            ttl_ms=ttl_ms or self.config.default_ttl_ms,
            plan=plan_job(endpoint_id, job_id, job_input, profile),
            submitted_at=time.monotonic(),
        )
        with self._lock:
            self._purge()
            self._jobs[job_id] = job
            self._accepted.append(job)
            if endpoint_id not in self._workers:
                self._workers[endpoint_id] = WorkerSlots(profile.workers)
        self._spawn(self._execute, job, name=f"runpod-job-{job_id[:8]}")
        self._scripted_run_failure(job_input, webhook, "lost_answers")  # accepted, answer lost
        return {"id": job_id, "status": "IN_QUEUE"}

    def status(self, endpoint_id: str, job_id: str) -> dict[str, Any] | None:
        """RunPod ``GET /status`` body, or None when unknown/forgotten (→ 404).

        Shape: ``{"id", "status", "delayTime"?, "executionTime"?, "workerId"?, "output"?,
        "error"?}``; ``delayTime`` (submission → start) and ``executionTime`` (start →
        terminal state) are measured integer milliseconds, present once known.
        """
        with self._lock:
            job = self._find(endpoint_id, job_id)
            if job is None:
                return None
            job.status_calls += 1
            if job.status_calls <= len(job.plan.status_errors):
                raise ScriptedFailure(job.plan.status_errors[job.status_calls - 1])
            return status_body(job)

    def cancel(self, endpoint_id: str, job_id: str) -> dict[str, Any] | None:
        """RunPod ``POST /cancel``: stops a queued/running job → ``{"id", "status":
        "CANCELLED"}``; a finished job keeps (and reports) its status; None when unknown."""
        with self._lock:
            job = self._find(endpoint_id, job_id)
            if job is None:
                return None
            job.cancel_calls += 1
            if job.cancel_calls <= len(job.plan.cancel_errors):
                raise ScriptedFailure(job.plan.cancel_errors[job.cancel_calls - 1])
            hook = None
            if job.status not in TERMINAL:
                hook = self._terminate(job, "CANCELLED")
                job.wake.set()
            answer = {"id": job.id, "status": job.status}
        self._webhooks.send(hook)
        return answer

    def health(self, endpoint_id: str) -> dict[str, Any] | None:
        """RunPod ``GET /health``: ``{"jobs": {"completed", "failed", "inProgress",
        "inQueue", "retried"}, "workers": {"idle", "running"}}``; None when unknown.

        ``completed``/``failed`` count since start (failed includes TIMED_OUT); the
        others are current.
        """
        profile = self.config.profile(endpoint_id)
        if profile is None:
            return None
        with self._lock:
            self._purge()
            live = [j.status for j in self._jobs.values() if j.endpoint_id == endpoint_id]
            finished = self._finished.get(endpoint_id, {})
            workers = self._workers.get(endpoint_id)
            running = workers.running if workers else 0
            total = workers.count if workers else profile.workers
        return {
            "jobs": {"completed": finished.get("completed", 0),
                     "failed": finished.get("failed", 0),
                     "inProgress": live.count("IN_PROGRESS"),
                     "inQueue": live.count("IN_QUEUE"),
                     "retried": 0},
            "workers": {"idle": total - running, "running": running},
        }

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Stop every job and webhook thread (jobs stay in their current state); waits up
        to ``timeout_s`` seconds in total. A webhook mid-request may outlive it (daemon)."""
        self._closing.set()
        with self._lock:
            for job in self._jobs.values():
                job.wake.set()
            threads = list(self._threads)
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def ground_truth(self) -> list[dict[str, Any]]:
        """Stand-in only: every job ``/run`` ever accepted, oldest first, including the
        ones RunPod has since forgotten — what RunPod would bill. Each:
        ``{"id", "endpoint_id", "input", "webhook", "policy": {"executionTimeout",
        "ttl"} (ms), "state", "deleted", "delay_ms", "executed_ms", "status_calls",
        "webhook_attempts", "webhook_pending"}``; ``executed_ms`` is the measured time on a
        worker so far (start → end, deletion or now); ``webhook_attempts`` counts the
        completion-webhook POSTs made (each retry and each copy counts) and
        ``webhook_pending`` the deliveries not finished yet (sending, or waiting to retry):
        once it is 0 after the job ended, no further POST will come."""
        with self._lock:
            self._purge()
            now = time.monotonic()
            return [truth_row(job, now) for job in self._accepted]

    def _scripted_run_failure(self, job_input: dict[str, Any], webhook: str | None,
                              kind: str = "run_errors") -> None:
        """Raise the next scripted /run failure of this job (``kind``: ``run_errors`` or
        ``lost_answers``), if any. Retries of one job share a key: its webhook URL
        (unique per job), else its input."""
        overrides = job_input.get("emulator")
        if not isinstance(overrides, dict) or not overrides.get(kind):
            return
        errors = run_errors(overrides, kind)
        key = kind + (webhook or json.dumps(job_input, sort_keys=True))
        with self._lock:
            seen = self._run_calls.get(key, 0)
            self._run_calls[key] = seen + 1
        if seen < len(errors):
            raise ScriptedFailure(errors[seen])

    # ------------------------------------------------------------------ execution

    def _execute(self, job: JobRecord) -> None:
        plan = job.plan
        ttl_end = job.submitted_at + job.ttl_ms / 1000
        if job.wake.wait(plan.delay_ms / 1000):
            return  # cancelled (already recorded) or shutting down
        workers = self._workers[job.endpoint_id]
        slot = workers.acquire(job, lambda: job.wake.is_set() or time.monotonic() >= ttl_end)
        if slot is None:
            return
        try:
            with self._lock:
                if job.status != "IN_QUEUE" or self._jobs.get(job.id) is not job:
                    return
                job.status, job.started_at = "IN_PROGRESS", time.monotonic()
                job.worker_id = f"emulator-{job.endpoint_id}-{slot}"
                started = job.started_at
            limits = {
                "done": math.inf if plan.execution_ms is None else plan.execution_ms / 1000,
                "TIMED_OUT": job.execution_timeout_ms / 1000,
                "ttl": ttl_end - started,
            }
            first = min(limits, key=lambda k: limits[k])  # ties: finishing wins
            if job.wake.wait(max(0.0, limits[first])):
                return  # cancelled (already recorded) or shutting down
            with self._lock:
                if job.status != "IN_PROGRESS" or self._jobs.get(job.id) is not job:
                    return
                if first == "ttl":
                    # RunPod deletes a job at its ttl whatever its state; no webhook.
                    del self._jobs[job.id]
                    # Deleted at the ttl itself: a thread woken late must not bill more.
                    job.deleted_at = min(time.monotonic(), ttl_end)
                    return
                if first == "TIMED_OUT":
                    hook = self._terminate(job, "TIMED_OUT")
                elif plan.error is not None:
                    job.error = plan.error
                    hook = self._terminate(job, "FAILED")
                else:
                    job.output = plan.output
                    hook = self._terminate(job, "COMPLETED")
        finally:
            workers.release(slot)
        self._webhooks.send(hook)

    def _terminate(self, job: JobRecord, status: str) -> Hook | None:
        """Move ``job`` to a terminal ``status`` (caller holds the lock); returns the
        webhook to send, if any."""
        job.status, job.finished_at = status, time.monotonic()
        counters = self._finished.setdefault(job.endpoint_id, {"completed": 0, "failed": 0})
        if status == "COMPLETED":
            counters["completed"] += 1
        elif status in ("FAILED", "TIMED_OUT"):
            counters["failed"] += 1
        if not job.webhook or job.plan.skip_webhook:
            return None
        # RunPod posts the /status body to the webhook; the input rides along.
        copies = 2 if job.plan.webhook_twice else 1
        job.webhook_pending += copies  # under the caller's lock: pending from the end on
        return job, job.webhook, {**status_body(job), "input": job.input}, copies

    # ------------------------------------------------------------------ webhooks

    def trace(self, endpoint_id: str, job_id: str) -> dict[str, Any] | None:
        """Stand-in only (not RunPod's API): ``{"received_at", "webhook_sent_at"}`` in
        epoch seconds (the latter None until sent), or None when unknown."""
        with self._lock:
            job = self._find(endpoint_id, job_id)
            if job is None:
                return None
            return {"id": job.id, "received_at": job.received_wall, "webhook_sent_at": job.webhook_sent_wall}

    # ------------------------------------------------------------------ store helpers

    def _spawn(self, target: Callable[..., None], *args: Any, name: str) -> None:
        def run() -> None:
            try:
                target(*args)
            except Exception:
                log.exception("%s crashed", name)
            finally:
                with self._lock:
                    self._threads.discard(thread)

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _find(self, endpoint_id: str, job_id: str) -> JobRecord | None:
        self._purge()
        job = self._jobs.get(job_id)
        return job if job is not None and job.endpoint_id == endpoint_id else None

    def _purge(self) -> None:
        # Lazy expiry on every access: no sweeper thread, and a read can never see a
        # job past its retention or ttl.
        now = time.monotonic()
        retention = self.config.result_retention_s
        for job_id in [i for i, j in self._jobs.items() if j.forget_at(retention) <= now]:
            job = self._jobs.pop(job_id)
            job.deleted_at = job.forget_at(retention)
            job.wake.set()  # a still-running job past its ttl stops now
