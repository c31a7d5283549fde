"""Bearer API keys for the app's ``/v1`` API (``Authorization: Bearer <key>``).

Two sources: the keys in settings (``GPUBILL_API_KEYS``, the dev key for the demo and
tests) and keys operators create with ``gpubill keys create`` (``ledger.api_keys``,
stored hashed, found by the id inside the key). ``flask.g.api_key_id`` names the key a
request used — ``"settings"`` for a configured key, the key's id otherwise — so
per-client state (Idempotency-Keys) is scoped by it.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import current_app, g, request

from ledger import api_keys
from ledger.db import transaction
from webhook_receiver import resources
from webhook_receiver.errors import ApiError

SETTINGS_KEY_ID = "settings"


def _key_id(presented: str) -> str | None:
    configured: list[str] = current_app.config["GPUBILL"].api_key_values()
    # Every configured key is compared (constant time each), so timing shows no match index.
    if sum(hmac.compare_digest(presented.encode(), k.encode()) for k in configured):
        return SETTINGS_KEY_ID
    if api_keys.key_id(presented) is None:
        return None  # not shaped like a stored key: no database round trip
    with transaction(resources.sessions()) as s:
        return api_keys.verify(s, presented)


def require_api_key(view: Callable[..., Any]) -> Callable[..., Any]:
    """401 unless the request carries a configured key or a live stored one; sets
    ``g.api_key_id``."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        kid = _key_id(key.strip()) if scheme.lower() == "bearer" and key.strip() else None
        if kid is None:
            raise ApiError(401, "unauthorized", "missing or invalid API key")
        g.api_key_id = kid
        return view(*args, **kwargs)

    return wrapped
