"""Bearer API keys for the app's ``/v1`` API (``Authorization: Bearer <key>``)."""
from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import current_app, request

from webhook_receiver.errors import ApiError


def require_api_key(view: Callable[..., Any]) -> Callable[..., Any]:
    """401 unless the request carries one of the configured keys (constant-time compare)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        keys: list[str] = current_app.config["GPUBILL"].api_key_values()
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(key.encode(), k.encode()) for k in keys):
            raise ApiError(401, "unauthorized", "missing or invalid API key")
        return view(*args, **kwargs)

    return wrapped
