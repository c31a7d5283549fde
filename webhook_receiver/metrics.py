"""``GET /metrics`` (Prometheus text format) and the receiver's request metrics.

Multi-process safe: under gunicorn (and Celery's prefork pool) each process writes its
counters and histograms to files in ``PROMETHEUS_MULTIPROC_DIR`` and a scrape merges
them (prometheus_client's multiprocess mode; gunicorn's ``child_exit`` hook in
``gpubill.gunicorn_conf`` marks dead workers). Worker processes on the same host write
to the same directory, so RunPod latency and errors (``gateways.runpod_metrics``) appear
here too. Money, job and backlog figures come from the ledger at scrape time
(``LedgerCollector``). Without the variable, this process's own registry is served.

``/metrics`` is behind a bearer token (``GPUBILL_METRICS_TOKEN``; Prometheus
``scrape_config.authorization``), not the app's API keys: it carries revenue totals,
and an operator credential should not be able to move money (docs/operating.md).
Names follow Prometheus' conventions (https://prometheus.io/docs/practices/naming/):
counters end in ``_total`` and never decrease, durations are ``_duration_seconds``.
"""
from __future__ import annotations

import hmac
import os
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from webhook_receiver import resources
from webhook_receiver.errors import ApiError
from webhook_receiver.ledger_collector import LedgerCollector

bp = Blueprint("metrics", __name__)

REQUESTS = Counter("gpubill_http_requests", "HTTP requests answered, by route and status.",
                   ["route", "method", "status"])
LATENCY = Histogram("gpubill_http_request_duration_seconds", "HTTP request latency, seconds, by route.",
                    ["route"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
WEBHOOKS = Counter("gpubill_webhook_requests", "Webhook deliveries by source and outcome "
                   "(accepted 2xx, rejected 4xx, error 5xx).", ["source", "outcome"])
WEBHOOK_LATENCY = Histogram("gpubill_webhook_request_duration_seconds", "Webhook handling latency, seconds.",
                            ["source"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


def _outcome(status: int) -> str:
    return "accepted" if status < 400 else "rejected" if status < 500 else "error"


def _start() -> None:
    g.metrics_start = time.perf_counter()


def _record(response: Response) -> Response:
    start = g.pop("metrics_start", None)
    if start is None:
        return response
    elapsed = time.perf_counter() - start
    # The URL rule, not the path: paths carry ids and webhook tokens (unbounded, secret).
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    if route == "/metrics":
        return response
    REQUESTS.labels(route, request.method, str(response.status_code)).inc()
    LATENCY.labels(route).observe(elapsed)
    if route.startswith("/webhooks/"):
        source = route.split("/")[2]
        WEBHOOKS.labels(source, _outcome(response.status_code)).inc()
        WEBHOOK_LATENCY.labels(source).observe(elapsed)
    return response


def init_app(app: Flask) -> None:
    """Time every request and register ``GET /metrics``."""
    app.before_request(_start)
    app.after_request(_record)
    app.register_blueprint(bp)


def exposition() -> bytes:
    """One scrape: every process's metrics (multiprocess mode) or this process's, then
    the ledger's (two text blocks with distinct metric names are one valid exposition)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
        text = generate_latest(processes)
    else:
        text = generate_latest(REGISTRY)
    ledger = CollectorRegistry()
    ledger.register(LedgerCollector(resources.sessions()))
    return text + generate_latest(ledger)


def _authorized() -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = current_app.config["GPUBILL"].metrics_token.get_secret_value()
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition (``text/plain; version=0.0.4``); 401 JSON without
    ``Authorization: Bearer <GPUBILL_METRICS_TOKEN>``."""
    if not _authorized():
        raise ApiError(401, "unauthorized", "missing or invalid metrics token (GPUBILL_METRICS_TOKEN)")
    return Response(exposition(), mimetype=CONTENT_TYPE_LATEST)
