"""Liveness (``/healthz``) and readiness (``/readyz``)."""
from __future__ import annotations

from functools import lru_cache

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Blueprint, jsonify
from sqlalchemy import text

from ledger.migrate import alembic_config
from webhook_receiver import resources

bp = Blueprint("health", __name__)


@lru_cache(maxsize=1)
def _code_heads() -> frozenset[str]:
    """The newest Alembic revision(s) this code knows (read once from the scripts)."""
    return frozenset(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


@bp.get("/healthz")
def healthz():
    """The process answers."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Ready to take traffic: the database answers, its schema is at the code's Alembic
    head, the broker accepts a connection. 200 ``{"status": "ok", "checks": {...}}``;
    503 ``{"status": "unavailable", "checks": {name: error}}`` naming what is not."""
    checks: dict[str, str] = {}
    try:
        with resources.sessions()() as s:
            s.execute(text("SELECT 1"))
            checks["database"] = "ok"
            current = set(MigrationContext.configure(s.connection()).get_current_heads())
        checks["migrations"] = "ok" if current == _code_heads() else (
            f"not at head: database at {','.join(sorted(current)) or 'nothing'}, "
            f"code at {','.join(sorted(_code_heads()))}")
    except Exception as exc:  # noqa: BLE001 - any driver error means "not ready"
        checks.setdefault("database", type(exc).__name__)
        checks.setdefault("migrations", "unknown")
    try:
        with resources.producer().connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any transport error means "not ready"
        checks["broker"] = type(exc).__name__
    ok = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ok" if ok else "unavailable", "checks": checks}), 200 if ok else 503
