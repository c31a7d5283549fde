"""Completion webhooks of the RunPod stand-in: one POST of the ``/status`` body (plus the
job's ``input``) per copy, retried ``config.webhook_retries`` times, ``webhook_retry_delay_s``
seconds apart, each POST timing out after ``WEBHOOK_TIMEOUT_S`` seconds. A receiver's
failure is logged, never raised."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from .config import EmulatorConfig
from .jobs import JobRecord

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 5.0
# A webhook to send: (job, url, body, copies) — ``copies`` is 2 for ``webhook_twice``.
Hook = tuple[JobRecord, str, dict[str, Any], int]


class WebhookSender:
    """Sends hooks on their own threads (``spawn``), counting attempts and pending
    deliveries on the job under ``lock`` (the engine's); nothing is sent once ``closing``
    is set."""

    def __init__(self, config: EmulatorConfig, lock: threading.Lock, closing: threading.Event,
                 spawn: Callable[..., None]) -> None:
        self.config = config
        self._lock = lock
        self._closing = closing
        self._spawn = spawn

    def send(self, hook: Hook | None) -> None:
        """Start delivering ``hook`` (None: nothing to send), each copy on a thread of its own."""
        if hook is None:
            return
        job, url, body, copies = hook
        if self._closing.is_set():
            with self._lock:
                job.webhook_pending -= copies
            return
        for _ in range(copies):
            self._spawn(self._deliver, job, url, body, name="runpod-webhook")

    def _deliver(self, job: JobRecord, url: str, body: dict[str, Any]) -> None:
        attempts = 1 + self.config.webhook_retries
        try:
            for attempt in range(attempts):
                if attempt and self._closing.wait(self.config.webhook_retry_delay_s):
                    return
                with self._lock:
                    job.webhook_attempts += 1
                    # The trace's send time: when the first POST leaves, not when its
                    # thread was started (issue 17 measures callback → capture from here).
                    if job.webhook_sent_wall is None:
                        job.webhook_sent_wall = time.time()
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
