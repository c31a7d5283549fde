"""RunPod's serverless REST API (the part the ``runpod`` SDK's ``Endpoint``/``Job`` use)
as a Flask app over ``Engine``.

Routes (RunPod docs, "Send API requests"): ``POST /v2/{endpoint}/run``,
``GET /v2/{endpoint}/status/{job}``, ``POST /v2/{endpoint}/cancel/{job}``,
``GET /v2/{endpoint}/health``. Every request needs ``Authorization: Bearer {api_key}``;
errors are JSON ``{"error": message}`` with 400/401/404.
"""
from __future__ import annotations

import hmac
import time
from typing import Any

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from .config import EmulatorConfig
from .engine import Engine, UnknownEndpoint
from .plan import TIMEOUT, ScriptedFailure


def create_app(config: EmulatorConfig) -> Flask:
    """The stand-in app; its ``Engine`` is ``app.extensions["runpod_engine"]``."""
    app = Flask(__name__)
    engine = Engine(config)
    app.extensions["runpod_engine"] = engine
    _register_auth(app, f"Bearer {config.api_key}".encode())
    _register_job_routes(app, engine, config)
    _register_endpoint_routes(app, engine)
    return app


def _register_auth(app: Flask, expected: bytes) -> None:
    """Every request needs ``Authorization`` == ``expected`` (else 401); unrouted paths and
    wrong methods answer JSON like the rest of the API."""

    @app.before_request
    def _authorize() -> ResponseReturnValue | None:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return _error(401, "Unauthorized")
        return None

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        return _error(exc.code or 500, exc.description or exc.name)


def _register_job_routes(app: Flask, engine: Engine, config: EmulatorConfig) -> None:
    """``/run``, ``/status/{job}``, ``/cancel/{job}`` and the stand-in-only ``/trace/{job}``."""

    @app.post("/v2/<endpoint_id>/run")
    def run(endpoint_id: str) -> ResponseReturnValue:
        try:
            job_input, webhook, timeout_ms, ttl_ms = _parse_run(request.get_json(silent=True),
                                                                config)
            return jsonify(engine.submit(endpoint_id, job_input, webhook=webhook,
                                         execution_timeout_ms=timeout_ms, ttl_ms=ttl_ms))
        except ScriptedFailure as failure:
            return _scripted(failure, config)
        except UnknownEndpoint:
            return _error(404, f"endpoint {endpoint_id} not found")
        except ValueError as exc:  # malformed body, policy or "emulator" overrides
            return _error(400, str(exc))
        except RuntimeError as exc:  # shutting down
            return _error(503, str(exc))

    @app.get("/v2/<endpoint_id>/status/<job_id>")
    def status(endpoint_id: str, job_id: str) -> ResponseReturnValue:
        try:
            body = engine.status(endpoint_id, job_id)
        except ScriptedFailure as failure:
            return _scripted(failure, config)
        return jsonify(body) if body is not None else _error(404, "request does not exist")

    @app.post("/v2/<endpoint_id>/cancel/<job_id>")
    def cancel(endpoint_id: str, job_id: str) -> ResponseReturnValue:
        try:
            body = engine.cancel(endpoint_id, job_id)
        except ScriptedFailure as failure:  # input.emulator.cancel_errors
            return _scripted(failure, config)
        return jsonify(body) if body is not None else _error(404, "request does not exist")

    @app.get("/v2/<endpoint_id>/trace/<job_id>")
    def trace(endpoint_id: str, job_id: str) -> ResponseReturnValue:
        """Stand-in only: when /run arrived and the webhook left (benchmarks/job_overhead)."""
        body = engine.trace(endpoint_id, job_id)
        return jsonify(body) if body is not None else _error(404, "request does not exist")


def _register_endpoint_routes(app: Flask, engine: Engine) -> None:
    """``/health`` and the stand-in-only ``/_control/jobs`` (ground truth)."""

    @app.get("/_control/jobs")
    def ground_truth() -> ResponseReturnValue:
        """Stand-in only: ``{"jobs": [...]}``, every job accepted (``Engine.ground_truth``)."""
        return jsonify({"jobs": engine.ground_truth()})

    @app.get("/v2/<endpoint_id>/health")
    def health(endpoint_id: str) -> ResponseReturnValue:
        body = engine.health(endpoint_id)
        if body is None:
            return _error(404, f"endpoint {endpoint_id} not found")
        return jsonify(body)


def _parse_run(body: Any, config: EmulatorConfig
               ) -> tuple[dict[str, Any], str | None, int | None, int | None]:
    """Validate a /run body → (input, webhook, executionTimeout ms, ttl ms); ValueError if bad."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    job_input = body.get("input")
    if not isinstance(job_input, dict):
        raise ValueError("input must be a JSON object")
    webhook = body.get("webhook")
    if webhook is not None and not (isinstance(webhook, str)
                                    and webhook.startswith(("http://", "https://"))):
        raise ValueError("webhook must be an http(s) URL")
    policy = body.get("policy") or {}
    if not isinstance(policy, dict):
        raise ValueError("policy must be a JSON object")
    # Bounds per RunPod docs ("Execution policies"): executionTimeout > 5000 ms,
    # 10 s <= ttl <= 1 week; the minimums are configurable for fast tests.
    timeout_ms = _policy_ms(policy, "executionTimeout", config.min_execution_timeout_ms, None)
    ttl_ms = _policy_ms(policy, "ttl", config.min_ttl_ms, config.max_ttl_ms)
    return job_input, webhook or None, timeout_ms, ttl_ms


def _policy_ms(policy: dict[str, Any], key: str, low: int, high: int | None) -> int | None:
    value = policy.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"policy.{key} must be an integer (milliseconds)")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" + (f" and <= {high}" if high is not None else "")
        raise ValueError(f"policy.{key} must be {bound} ms")
    return value


def _scripted(failure: ScriptedFailure, config: EmulatorConfig) -> ResponseReturnValue:
    """A failure scripted by ``input.emulator`` (``run_errors`` / ``status_errors``):
    that HTTP status, or for ``"timeout"`` no answer for ``hang_s`` seconds, then 504."""
    if failure.code == TIMEOUT:
        time.sleep(config.hang_s)
        return _error(504, "emulated timeout")
    return _error(int(failure.code), f"emulated {failure.code}")


def _error(code: int, message: str) -> ResponseReturnValue:
    return jsonify({"error": message}), code
