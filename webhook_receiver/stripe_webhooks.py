"""``POST /webhooks/stripe``: verify, store, enqueue, answer.

The signature is checked on the raw body with the stripe SDK (``Stripe-Signature``,
HMAC-SHA256, tolerance 300 s); timestamps far in the future are refused too, which the
SDK does not check — with the timestamp the SDK itself parsed (``signed_at``). The
body was bounded before (``webhook_receiver.bodies``): a cut prefix is never verified.
The verified event is stored by ``evt_`` id with ``stripe.process_event`` queued by
``publish_after_commit`` in the same transaction; at its commit the receiver's publisher
hands the id to the batch publisher (``base.batch_publisher``), which enqueues its task
just after the answer; a duplicate delivery answers 200 and changes nothing. Bad signature or payload → 400
(nothing stored); database down → 503 so Stripe retries (for 3 days).
"""
from __future__ import annotations

import time
from typing import Any

import stripe
from flask import Blueprint, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from base import queues
from base.after_commit import publish_after_commit
from ledger.db import transaction
from ledger.inbox import store_stripe_event
from ledger.models import EventStatus
from webhook_receiver import resources
from webhook_receiver.errors import ApiError

bp = Blueprint("stripe_webhooks", __name__)


class _EventData(BaseModel):
    object: dict[str, Any]


class StripeEnvelope(BaseModel):
    """The fields of a Stripe ``event`` we rely on; all others are kept in the raw body."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(pattern=r"^evt_[A-Za-z0-9_]{1,240}$")
    type: str = Field(min_length=1, max_length=100)
    livemode: bool
    api_version: str | None = Field(default=None, max_length=32)
    data: _EventData


def signed_at(header: str) -> int:
    """The timestamp ``stripe.WebhookSignature.verify_header`` checked the signature
    against, read by the SDK's own parser (stripe-python 16,
    ``WebhookSignature._get_timestamp_and_signatures``: the first item whose key is
    exactly ``t``, no whitespace stripped). A parser of our own disagreed with it
    (``v1=…, t=<now>,t=<future>`` passed a signature over ``<future>``), so there is
    none. Call only after ``verify_header`` accepted ``header``."""
    timestamp, _ = stripe.WebhookSignature._get_timestamp_and_signatures(
        header, stripe.WebhookSignature.EXPECTED_SCHEME)
    return int(timestamp)


@bp.post("/webhooks/stripe")
def receive():
    cfg = current_app.config["GPUBILL"]
    payload = request.get_data(cache=False)
    header = request.headers.get("Stripe-Signature", "")
    if not header:
        raise ApiError(400, "missing_signature", "Stripe-Signature header is required")
    try:
        stripe.WebhookSignature.verify_header(
            payload, header, cfg.stripe_webhook_secret.get_secret_value(), cfg.stripe_tolerance_s)
    except stripe.SignatureVerificationError as err:
        raise ApiError(400, "invalid_signature", str(err).split(".")[0]) from None
    except TypeError:  # the SDK's hmac.compare_digest refuses a non-ASCII v1 value
        raise ApiError(400, "invalid_signature", "signature is not ASCII hex") from None
    except ValueError:  # body is not UTF-8
        raise ApiError(400, "invalid_payload", "body is not UTF-8 text") from None
    if signed_at(header) > time.time() + cfg.stripe_tolerance_s:
        raise ApiError(400, "invalid_signature", "signature timestamp is in the future")
    try:
        event = StripeEnvelope.model_validate_json(payload)
    except (ValueError, ValidationError):
        raise ApiError(400, "invalid_payload", "body is not a Stripe event") from None

    with transaction(resources.intake()) as s:
        earlier = store_stripe_event(s.connection(), event_id=event.id, type=event.type,
                                     livemode=event.livemode, api_version=event.api_version,
                                     payload=payload.decode(), commit=False)
        if earlier in (None, EventStatus.RECEIVED):
            # A duplicate of a still-unprocessed event re-enqueues it: harmless (idempotent)
            # and it heals a publish lost while the broker was down.
            publish_after_commit(s, queues.PROCESS_STRIPE_EVENT, event.id)
    return jsonify({"received": True, "duplicate": earlier is not None}), 200
