"""RunPod call latency and errors, recorded in the worker processes that make the calls.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``gpubill up`` points the receiver and the
workers at one directory), prometheus_client writes these to files there and the
receiver's ``GET /metrics`` aggregates them; see ``webhook_receiver.metrics``.
"""
from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from prometheus_client import Counter, Histogram

RUNPOD_SECONDS = Histogram(
    "gpubill_runpod_request_duration_seconds", "RunPod serverless API call latency, seconds.", ["op"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
RUNPOD_ERRORS = Counter(
    "gpubill_runpod_errors", "RunPod serverless API calls that failed, by HTTP status or error class.",
    ["op", "error"])


RUNPOD_COST_USD = Counter(
    "gpubill_runpod_cost_usd", "RunPod GPU cost of settled jobs, USD, by GPU and basis: "
    "basis=execution is executionTime (what users paid for), basis=billed is RunPod's "
    "bill (cold-start share of delayTime + executionTime, per second rounded up).",
    ["gpu", "basis"])


RUNPOD_STRAYS = Counter(
    "gpubill_runpod_strays", "Stray RunPod jobs settled (cancelled, written off), by whether their "
    "GPU time is known: time=measured (RunPod reported executionTime) or time=unknown (RunPod had "
    "forgotten the job: GPU time we may owe and cannot see; alert on any increase).",
    ["time"])


def record_stray(execution_known: bool) -> None:
    """Count one settled stray (``services.runpod_jobs.settle_stray``)."""
    RUNPOD_STRAYS.labels("measured" if execution_known else "unknown").inc()


def record_cost(gpu: str, execution_usd: Decimal, billed_usd: Decimal) -> None:
    """Count one settled job's two cost figures (USD; a metric, never money: the
    ledger's figures are the job's ``runpod_cost_usd`` / ``runpod_billed_usd``)."""
    RUNPOD_COST_USD.labels(gpu, "execution").inc(float(execution_usd))
    RUNPOD_COST_USD.labels(gpu, "billed").inc(float(billed_usd))


def _error_label(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return f"HTTP{code}" if code else type(exc).__name__


class Timed:
    """Wraps the runpod SDK's ``RunPodClient``: every ``get``/``post`` is timed and its
    failures counted, labelled by the path's operation (``{endpoint}/run`` → ``run``,
    ``{endpoint}/status/{id}`` → ``status``)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def _call(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        parts = path.strip("/").split("/")
        op = parts[1] if len(parts) > 1 else parts[0]
        start = time.perf_counter()
        try:
            return getattr(self._client, method)(path, *args, **kwargs)
        except Exception as exc:
            RUNPOD_ERRORS.labels(op, _error_label(exc)).inc()
            raise
        finally:
            RUNPOD_SECONDS.labels(op).observe(time.perf_counter() - start)

    def get(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return self._call("get", path, *args, **kwargs)

    def post(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return self._call("post", path, *args, **kwargs)
