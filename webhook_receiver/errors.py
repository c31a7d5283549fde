"""JSON errors: ``{"error": {"code", "message", "fields"?}}`` with a fitting status.

Every user-supplied input maps to a 4xx; only a failure of our own dependencies (the
database) answers 5xx, so Stripe and RunPod retry.
"""
from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    """Raise from a view to answer ``status`` with a JSON error body."""

    def __init__(self, status: int, code: str, message: str,
                 fields: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields


def error_body(code: str, message: str, fields: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(e: ApiError):
        return jsonify(error_body(e.code, e.message, e.fields)), e.status

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        code = (e.name or "error").lower().replace(" ", "_")
        return jsonify(error_body(code, e.description or e.name)), e.code or 500

    @app.errorhandler(OperationalError)
    def _db_down(e: OperationalError):
        app.logger.error("database unavailable: %s", e)
        return jsonify(error_body("unavailable", "database unavailable, retry later")), 503
