"""Abuse limits on the app's ``/v1`` API (Flask-Limiter).

Two shared limits on every ``/v1`` blueprint, from settings:

* ``GPUBILL_RATE_LIMIT_API`` per API key (default ``1200/minute``): the bucket is a
  SHA-256 prefix of the ``Authorization`` header, never the key itself.
* ``GPUBILL_RATE_LIMIT_AUTH_FAILURES`` per client address (default ``60/minute``),
  counting only answers ``401``: an address over it is refused every ``/v1`` request
  until its window ends (a lockout), good key or not. The address is the peer address
  (``request.remote_addr``); behind a proxy, set gunicorn's ``forwarded_allow_ips``.

An exceeded limit answers ``429`` ``{"error": {"code": "rate_limited", ...}}`` with
``Retry-After`` (seconds) and ``X-RateLimit-*`` headers, and counts
``gpubill_rate_limited_requests_total{limit}``. Counters live in
``GPUBILL_RATE_LIMIT_STORAGE_URL``; empty → the broker when it speaks Redis (always in
production; ``gpubill up``'s embedded broker too), so every receiver process counts
in one place and the limits are exact; process memory only without a Redis broker
(each gunicorn worker would count alone: 2 workers let 2 × the threshold through,
measured 120 × 401 for ``60/minute`` before, issue 15). Storage trouble never fails a request
(``swallow_errors``): limits fail open, logged. Webhooks and probes are not limited
here: Stripe and RunPod retry on 429 and are authenticated by signature and token.
"""
from __future__ import annotations

import hashlib

from flask import Blueprint, Flask, jsonify, request
from flask_limiter import Limiter, RateLimitExceeded, RequestLimit
from flask_limiter.util import get_remote_address
from prometheus_client import Counter

from base.settings import Settings
from webhook_receiver.errors import error_body

RATE_LIMITED = Counter("gpubill_rate_limited_requests", "Requests refused with 429, by limit "
                       "(api_key: per-key rate; auth_failures: per-address lockout).", ["limit"])
API_SCOPE, AUTH_SCOPE = "api_key", "auth_failures"


def storage_url(cfg: Settings) -> str:
    """Where the counters live (see the module doc)."""
    if cfg.rate_limit_storage_url:
        return cfg.rate_limit_storage_url
    if cfg.env == "production" or cfg.broker_url.startswith(("redis://", "rediss://")):
        return cfg.broker_url
    return "memory://"


def _api_key_bucket() -> str:
    header = request.headers.get("Authorization", "")
    return "key:" + hashlib.sha256(header.encode()).hexdigest()[:32]


def _breached(scope: str):
    def on_breach(_limit: RequestLimit) -> None:
        RATE_LIMITED.labels(scope).inc()
    return on_breach


def _too_many(e: RateLimitExceeded):
    # Retry-After and X-RateLimit-* are added by the limiter's after_request hook.
    return jsonify(error_body("rate_limited", f"too many requests ({e.description}); see Retry-After")), 429


def init_app(app: Flask, blueprints: list[Blueprint]) -> Limiter:
    """Limit ``blueprints`` (the ``/v1`` ones) on ``app``; returns the app's limiter."""
    cfg: Settings = app.config["GPUBILL"]
    app.config.update(RATELIMIT_HEADERS_ENABLED=True, RATELIMIT_SWALLOW_ERRORS=True)
    limiter = Limiter(get_remote_address, app=app, storage_uri=storage_url(cfg),
                      strategy="fixed-window", key_prefix="gpubill-rl")
    for bp in blueprints:
        limiter.shared_limit(cfg.rate_limit_auth_failures, AUTH_SCOPE, key_func=get_remote_address,
                             deduct_when=lambda response: response.status_code == 401,
                             on_breach=_breached(AUTH_SCOPE))(bp)
        limiter.shared_limit(cfg.rate_limit_api, API_SCOPE, key_func=_api_key_bucket,
                             on_breach=_breached(API_SCOPE))(bp)
    app.register_error_handler(RateLimitExceeded, _too_many)
    return limiter
