"""Per-request log context and one structured line per request.

``job_id``/``user_id`` come from the URL (``/v1/jobs/<job_id>``, ``/v1/wallets/<user_id>``),
the JSON body's ``user_id`` of a ``/v1`` request, or the ``job_id`` of a ``/v1`` JSON
answer; they are on every line the request logs, and on its ``request`` line (method,
route — never the raw path, which may hold a webhook token —, status, duration).
Webhook bodies are not read here (the Stripe view verifies its raw body first).
"""
from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from base import logs

log = logging.getLogger("gpubill.request")
_PROBES = ("/healthz", "/readyz", "/metrics")


def _bind() -> None:
    ids = {k: v for k, v in (request.view_args or {}).items() if k in ("job_id", "user_id")}
    if request.path.startswith("/v1/") and request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict) and isinstance(body.get("user_id"), str):
            ids.setdefault("user_id", body["user_id"][:64])
    g.log_token = logs.bind(**ids)
    g.log_start = time.perf_counter()


def _request_line(response: Response) -> Response:
    # A job created by this request (set by api.create_job; URL job ids are bound in _bind).
    extra: dict[str, object] = {"job_id": g.log_job_id} if g.get("log_job_id") else {}
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    elapsed_ms = round((time.perf_counter() - g.get("log_start", time.perf_counter())) * 1000, 1)
    level = logging.DEBUG if route in _PROBES else logging.INFO  # probes would drown the rest
    log.log(level, "%s %s %s %.1fms", request.method, route, response.status_code, elapsed_ms,
             extra={"method": request.method, "route": route, "status": response.status_code,
                    "duration_ms": elapsed_ms, **extra})
    return response


def _unbind(_exc: BaseException | None) -> None:
    token = g.pop("log_token", None)
    if token is not None:
        try:
            logs.unbind(token)
        except ValueError:  # created in another context (should not happen); leave it
            pass


def init_app(app: Flask) -> None:
    app.before_request(_bind)
    app.after_request(_request_line)
    app.teardown_request(_unbind)
