"""Liveness and readiness."""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from webhook_receiver import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    """The process answers."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():  # type: ignore[no-untyped-def]
    """The database and the broker are reachable: 200, else 503 naming what is down."""
    checks: dict[str, str] = {}
    try:
        with services.sessions()() as s:
            s.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means "not ready"
        checks["database"] = type(exc).__name__
    try:
        with services.producer().connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = type(exc).__name__
    ok = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ok" if ok else "unavailable", "checks": checks}), 200 if ok else 503
