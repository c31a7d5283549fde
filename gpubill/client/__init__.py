"""A typed Python client for the app's side of gpubill's ``/v1`` API.

>>> api = GpubillClient("http://127.0.0.1:8000", api_key="gpubill_dev_api_key")
>>> topup = api.create_topup("alice", "medium")            # send the user to topup.checkout_url
>>> job = api.submit_job("alice", "framing", {"duration_s": 30, "resolution": "1080p"},
...                      {"clip": "s3://clips/a.mp4"}, idempotency_key="export-42")
>>> receipt = api.wait_for_receipt(job.job_id)             # JobReceipt: charge, released, runpod ms
>>> api.wallet("alice").available                          # credits
>>> event = verify_notification(body, headers["Gpubill-Signature"], secret)   # outbound webhooks

Answers are the receiver's own pydantic models (``webhook_receiver.responses``), so
the client and the OpenAPI document cannot disagree. Money is int credits. Errors:
``ApiError`` (any non-2xx, with the JSON ``error.code``/``message``), ``TimeoutError``
(``wait_for_receipt``), ``SignatureError`` (``verify_notification``).
"""
from __future__ import annotations

import json
import time
from typing import Any

import requests
import stripe

from ledger.models import JobStatus
from webhook_receiver.responses import JobAccepted, JobReceipt, TopupCreated, WalletBody

__all__ = ["ApiError", "GpubillClient", "SignatureError", "verify_notification", "TERMINAL"]

TERMINAL = frozenset(JobStatus.TERMINAL)


class ApiError(Exception):
    """A non-2xx answer: ``status`` (HTTP), ``code`` and ``message`` from the JSON body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class SignatureError(ValueError):
    """An outbound notification whose ``Gpubill-Signature`` does not verify."""


class GpubillClient:
    """The ``/v1`` API at ``base_url`` with ``Authorization: Bearer {api_key}``;
    ``timeout_s`` per request (seconds)."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {api_key}"

    def _call(self, method: str, path: str, ok: int, **kwargs: Any) -> tuple[dict[str, Any], requests.Response]:
        r = self.http.request(method, f"{self.base_url}{path}", timeout=self.timeout_s, **kwargs)
        if r.status_code != ok:
            try:
                err = r.json()["error"]
                code, message = err.get("code", "error"), err.get("message", r.text)
            except (ValueError, KeyError, TypeError):
                code, message = "error", r.text[:200]
            raise ApiError(r.status_code, code, message)
        return r.json(), r

    def submit_job(self, user_id: str, job_type: str, params: dict[str, Any],
                   job_input: dict[str, Any] | None = None, *, idempotency_key: str | None = None) -> JobAccepted:
        """``POST /v1/jobs`` → 202 ``JobAccepted`` (the hold is placed asynchronously).
        With ``idempotency_key`` a retry answers the first job (same body) or raises
        ``ApiError`` 409 (another body). 402: not enough credits."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body, _ = self._call("POST", "/v1/jobs", 202, headers=headers, json={
            "user_id": user_id, "type": job_type, "params": params, "input": job_input or {}})
        return JobAccepted.model_validate(body)

    def job(self, job_id: str) -> JobReceipt:
        """``GET /v1/jobs/{job_id}``: status and receipt."""
        body, _ = self._call("GET", f"/v1/jobs/{job_id}", 200)
        return JobReceipt.model_validate(body)

    def wait_for_receipt(self, job_id: str, timeout_s: float = 120.0, poll_s: float = 0.25) -> JobReceipt:
        """Poll the job until it is terminal (``TERMINAL``); raises ``TimeoutError``."""
        deadline = time.monotonic() + timeout_s
        while True:
            receipt = self.job(job_id)
            if receipt.status in TERMINAL:
                return receipt
            if time.monotonic() > deadline:
                raise TimeoutError(f"{job_id} still {receipt.status} after {timeout_s} s")
            time.sleep(poll_s)

    def wallet(self, user_id: str) -> WalletBody:
        """``GET /v1/wallets/{user_id}``: balance, held, available (credits)."""
        body, _ = self._call("GET", f"/v1/wallets/{user_id}", 200)
        return WalletBody.model_validate(body)

    def create_topup(self, user_id: str, pack: str, *, idempotency_key: str | None = None) -> TopupCreated:
        """``POST /v1/topups`` → 201: a Stripe Checkout Session for ``pack``; credits
        arrive when Stripe reports it paid (webhook)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body, _ = self._call("POST", "/v1/topups", 201, headers=headers,
                             json={"user_id": user_id, "pack": pack})
        return TopupCreated.model_validate(body)


def verify_notification(payload: bytes | str, signature_header: str, secret: str,
                        tolerance_s: int = 300) -> dict[str, Any]:
    """Check an outbound notification (``job.completed`` …): ``Gpubill-Signature`` is
    Stripe's scheme (``t=…,v1=HMAC-SHA256("{t}.{body}")``), so stripe-python's
    ``WebhookSignature.verify_header`` checks it, timestamp tolerance included
    (https://docs.stripe.com/webhooks#verify-manually). Returns the parsed event;
    raises ``SignatureError``. Deduplicate on the event's ``id`` (at-least-once)."""
    text = payload.decode() if isinstance(payload, bytes) else payload
    try:
        stripe.WebhookSignature.verify_header(text, signature_header, secret, tolerance_s)
    except stripe.SignatureVerificationError as err:
        raise SignatureError(str(err)) from None
    return json.loads(text)
