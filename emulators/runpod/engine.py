"""In-memory RunPod serverless jobs: queueing, measured execution, cancel, expiry, webhooks.

No HTTP here; ``app.py`` maps RunPod's REST API onto ``Engine``. Each job gets one
daemon thread that waits out its queue delay, takes a worker slot of its endpoint,
then "executes" by waiting on an event that cancel/shutdown can set early. Reported
times are measured with ``time.monotonic`` — never the planned values — so callers see
what RunPod would have billed for the wait they actually got.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import requests

from .config import EmulatorConfig, EndpointProfile

log = logging.getLogger(__name__)

# RunPod /status `status` values that never change again.
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
WEBHOOK_TIMEOUT_S = 5.0
_POLL_S = 0.02  # how often a queued job re-checks cancel/ttl while waiting for a worker
_OVERRIDES = {"execution_ms", "delay_ms", "fail", "never_finish", "output", "skip_webhook",
              "run_errors", "status_errors", "forget_after_s", "webhook_twice", "lost_answers",
              "cancel_errors"}
# A scripted /run failure: an HTTP status to answer, or "timeout" (no answer in time).
TIMEOUT = "timeout"


class ScriptedFailure(Exception):
    """A /run or /status call the job's ``input.emulator`` scripts to fail: ``code``
    is the HTTP status to answer, or ``TIMEOUT`` (hang, then 504)."""

    def __init__(self, code: int | str) -> None:
        super().__init__(f"emulated {code}")
        self.code = code


class UnknownEndpoint(LookupError):
    """The endpoint id is not configured and ``allow_any_endpoint`` is off."""


@dataclass(frozen=True)
class Plan:
    """What a job will do, decided at submission from its input and endpoint profile.

    ``execution_ms`` None means it never finishes on its own (``never_finish``).
    """

    execution_ms: float | None
    delay_ms: float
    error: str | None
    output: Any
    skip_webhook: bool = False  # a lost callback: only polling /status finds the result
    status_errors: tuple[int, ...] = ()  # the first /status calls answer these codes
    cancel_errors: tuple[int, ...] = ()  # the first /cancel calls answer these codes
    forget_after_s: float | None = None  # forgotten this long after submission (→ 404)
    webhook_twice: bool = False  # RunPod delivering one callback twice


@dataclass(eq=False)
class _Job:
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


def plan_job(endpoint_id: str, job_id: str, job_input: dict[str, Any],
             profile: EndpointProfile) -> Plan:
    """Decide a job's execution from ``job_input`` (see ``EndpointProfile``) and its
    optional ``"emulator"`` overrides. Raises ``ValueError`` on malformed overrides."""
    overrides = job_input.get("emulator", {})
    if not isinstance(overrides, dict):
        raise ValueError("input.emulator must be an object")
    unknown = sorted(set(overrides) - _OVERRIDES)
    if unknown:
        raise ValueError(f"input.emulator: unknown key(s) {', '.join(unknown)}")
    for key in ("execution_ms", "delay_ms"):
        if key in overrides and not (_is_number(overrides[key]) and overrides[key] >= 0):
            raise ValueError(f"input.emulator.{key} must be a number >= 0")
    if "fail" in overrides and not isinstance(overrides["fail"], str):
        raise ValueError("input.emulator.fail must be a string (the error message)")
    run_errors(overrides)
    run_errors(overrides, "lost_answers")
    status_errors = overrides.get("status_errors", [])
    if not (isinstance(status_errors, list) and all(_is_error_code(c) for c in status_errors)):
        raise ValueError("input.emulator.status_errors must be a list of HTTP error codes")
    cancel_errors = overrides.get("cancel_errors", [])
    if not (isinstance(cancel_errors, list) and all(_is_error_code(c) for c in cancel_errors)):
        raise ValueError("input.emulator.cancel_errors must be a list of HTTP error codes")
    forget = overrides.get("forget_after_s")
    if forget is not None and not (_is_number(forget) and forget >= 0):
        raise ValueError("input.emulator.forget_after_s must be a number >= 0")

    duration = job_input.get("duration_s")
    execution_ms: float | None = profile.base_ms + (
        profile.ms_per_clip_second * duration if _is_number(duration) else 0)
    execution_ms = overrides.get("execution_ms", execution_ms)
    if overrides.get("never_finish"):
        execution_ms = None

    error = overrides.get("fail")
    if error is None and _unlucky(job_input, profile.fail_permille):
        error = f"emulated worker failure (fail_permille={profile.fail_permille})"
    default_output = {"output_url": f"s3://emulator/{endpoint_id}/{job_id}.mp4",
                      "endpoint_id": endpoint_id}
    return Plan(execution_ms=execution_ms,
                delay_ms=overrides.get("delay_ms", profile.delay_ms),
                error=error,
                output=overrides["output"] if "output" in overrides else default_output,
                skip_webhook=bool(overrides.get("skip_webhook", False)),
                status_errors=tuple(status_errors), forget_after_s=forget,
                cancel_errors=tuple(cancel_errors),
                webhook_twice=bool(overrides.get("webhook_twice", False)))


def run_errors(overrides: dict[str, Any], key: str = "run_errors") -> list[int | str]:
    """``input.emulator.run_errors``: what the first /run calls of this job answer
    instead of queueing it (HTTP error codes, or ``"timeout"``). ``lost_answers``, same
    shape: the first /run calls *accept and run* the job, then answer that instead of
    its id — RunPod's answer lost on the way back. ValueError if malformed."""
    errors = overrides.get(key, [])
    if not (isinstance(errors, list) and all(_is_error_code(c) or c == TIMEOUT for c in errors)):
        raise ValueError(f'input.emulator.{key} must be a list of HTTP error codes or "timeout"')
    return errors


def _is_error_code(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599


class _Workers:
    """One endpoint's worker slots: at most ``count`` jobs execute at once; jobs that are
    ready to start take free slots in arrival order."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._free = list(range(count))
        self._queue: deque[object] = deque()
        self._cond = threading.Condition()

    @property
    def running(self) -> int:
        return self.count - len(self._free)

    def acquire(self, ticket: object, give_up: Callable[[], bool]) -> int | None:
        """Block until a slot is free and ``ticket`` is first in line; the slot index, or
        None once ``give_up()`` is true (polled, so cancel/ttl/shutdown need no wake-up)."""
        with self._cond:
            self._queue.append(ticket)
            try:
                while not (self._free and self._queue[0] is ticket):
                    if give_up():
                        return None
                    self._cond.wait(_POLL_S)
                return self._free.pop(0)
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()

    def release(self, slot: int) -> None:
        with self._cond:
            self._free.append(slot)
            self._free.sort()
            self._cond.notify_all()


class Engine:
    """The job store. Thread-safe; every public method purges expired jobs first."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._workers: dict[str, _Workers] = {}
        self._finished: dict[str, dict[str, int]] = {}  # endpoint -> {"completed", "failed"}
        self._threads: set[threading.Thread] = set()
        self._closing = threading.Event()
        self._run_calls: dict[str, int] = {}  # script key -> /run calls seen (run_errors)
        self._accepted: list[_Job] = []  # every job /run ever accepted, never purged

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
        job = _Job(
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
                self._workers[endpoint_id] = _Workers(profile.workers)
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
            return _body(job)

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
        self._send_webhook(hook)
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
            out = []
            for job in self._accepted:
                executed = 0
                if job.started_at is not None:
                    end = job.finished_at or job.deleted_at or now
                    executed = _ms(end - job.started_at)
                out.append({"id": job.id, "endpoint_id": job.endpoint_id, "input": job.input,
                            "webhook": job.webhook,
                            "policy": {"executionTimeout": job.execution_timeout_ms,
                                       "ttl": job.ttl_ms},
                            "state": job.status, "deleted": job.deleted_at is not None,
                            "delay_ms": _body(job).get("delayTime"), "executed_ms": executed,
                            "status_calls": job.status_calls,
                            "webhook_attempts": job.webhook_attempts,
                            "webhook_pending": job.webhook_pending})
            return out

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

    def _execute(self, job: _Job) -> None:
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
        self._send_webhook(hook)

    def _terminate(self, job: _Job, status: str) -> tuple[_Job, str, dict[str, Any], int] | None:
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
        return job, job.webhook, {**_body(job), "input": job.input}, copies

    # ------------------------------------------------------------------ webhooks

    def trace(self, endpoint_id: str, job_id: str) -> dict[str, Any] | None:
        """Stand-in only (not RunPod's API): ``{"received_at", "webhook_sent_at"}`` in
        epoch seconds (the latter None until sent), or None when unknown."""
        with self._lock:
            job = self._find(endpoint_id, job_id)
            if job is None:
                return None
            return {"id": job.id, "received_at": job.received_wall, "webhook_sent_at": job.webhook_sent_wall}

    def _send_webhook(self, hook: tuple[_Job, str, dict[str, Any], int] | None) -> None:
        if hook is None:
            return
        job, url, body, copies = hook
        if self._closing.is_set():
            with self._lock:
                job.webhook_pending -= copies
            return
        with self._lock:
            if job.webhook_sent_wall is None:
                job.webhook_sent_wall = time.time()
        for _ in range(copies):
            self._spawn(self._deliver, job, url, body, name="runpod-webhook")

    def _deliver(self, job: _Job, url: str, body: dict[str, Any]) -> None:
        attempts = 1 + self.config.webhook_retries
        try:
            for attempt in range(attempts):
                if attempt and self._closing.wait(self.config.webhook_retry_delay_s):
                    return
                with self._lock:
                    job.webhook_attempts += 1
                try:
                    response = requests.post(url, json=body, timeout=WEBHOOK_TIMEOUT_S)
                    if 200 <= response.status_code < 300:
                        return
                    reason = f"HTTP {response.status_code}"
                except Exception as exc:  # noqa: BLE001 - never let a receiver's failure reach the server
                    reason = f"{exc.__class__.__name__}: {exc}"
                log.warning("webhook %s for job %s failed (attempt %d/%d): %s",
                            url, body.get("id"), attempt + 1, attempts, reason)
        finally:
            with self._lock:
                job.webhook_pending -= 1

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

    def _find(self, endpoint_id: str, job_id: str) -> _Job | None:
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


def _body(job: _Job) -> dict[str, Any]:
    body: dict[str, Any] = {"id": job.id, "status": job.status}
    if job.started_at is not None:
        body["delayTime"] = _ms(job.started_at - job.submitted_at)
    elif job.finished_at is not None:  # cancelled while queued: its whole life was delay
        body["delayTime"] = _ms(job.finished_at - job.submitted_at)
    if job.finished_at is not None:
        body["executionTime"] = (_ms(job.finished_at - job.started_at)
                                 if job.started_at is not None else 0)
    if job.worker_id is not None:
        body["workerId"] = job.worker_id
    if job.status == "COMPLETED":
        body["output"] = job.output
    if job.error is not None:
        body["error"] = job.error
    return body


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _unlucky(job_input: dict[str, Any], fail_permille: int) -> bool:
    if fail_permille <= 0:
        return False
    canonical = json.dumps(job_input, sort_keys=True, separators=(",", ":"))
    return int(hashlib.sha256(canonical.encode()).hexdigest(), 16) % 1000 < fail_permille
