"""Per-job RunPod webhook tokens: HMAC-SHA256 of the job id under a server secret.

Unguessable without the secret, so the URL itself authenticates RunPod's (unsigned)
callback; it only ever triggers a ``/status`` re-fetch, never a money decision.
"""
from __future__ import annotations

import hashlib
import hmac


def webhook_token(secret: str, job_id: str) -> str:
    """64 hex characters identifying ``job_id``'s callback URL."""
    return hmac.new(secret.encode(), f"runpod-webhook:{job_id}".encode(), hashlib.sha256).hexdigest()
