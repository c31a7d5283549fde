"""``GET /v1/packs`` and ``POST /v1/topups``: buying credits through Stripe Checkout.

The client names a pack, never an amount: price and credits are server-side data
(``pricing/packs.toml``). ``POST /v1/topups {user_id, pack}`` creates a Checkout Session
through ``stripe.StripeClient`` and stores an ``open`` top-up for it; the credits arrive
with the ``checkout.session.completed`` (or ``async_payment_succeeded``) webhook.
An ``Idempotency-Key`` header makes a retried request answer the same session.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import stripe
from flask import Blueprint, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from ledger import topups
from ledger.db import transaction
from pricing import Pack, load_packs
from webhook_receiver import services
from webhook_receiver.auth import require_api_key
from webhook_receiver.errors import ApiError
from gpubill.ids import UserId
from webhook_receiver.schemas import parse_json
from worker.stripe_gateway import idempotency_key

bp = Blueprint("topups", __name__, url_prefix="/v1")


class TopupRequest(BaseModel):
    """``POST /v1/topups``: ``{user_id, pack}`` — no amount, ever."""

    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    # The spec lists the packs of packs.toml (an unknown one is a 422, issue 13 finding).
    pack: str = Field(min_length=1, max_length=32,
                      json_schema_extra=lambda s: s.update(enum=sorted(load_packs())))


def pack_body(p: Pack) -> dict[str, Any]:
    return {"id": p.id, "price": p.price, "currency": p.currency, "credits": p.credits}


def rate_limited() -> ApiError:
    """Stripe answered 429, which stripe-python 16 does not retry: 503
    ``stripe_rate_limited`` (nothing stored); retry with the same Idempotency-Key."""
    return ApiError(503, "stripe_rate_limited", "payment provider is rate limiting, retry shortly")


def stripe_create(create: Callable[[], dict[str, Any]], what: str) -> dict[str, Any]:
    """Run a gateway create, mapping Stripe's errors: ``IdempotencyError`` → 409
    ``idempotency_conflict``, ``RateLimitError`` → ``rate_limited()``, any other
    ``StripeError`` (unreachable after the SDK's retries) → 502 ``stripe_unavailable``."""
    try:
        return create()
    except stripe.IdempotencyError:
        raise ApiError(409, "idempotency_conflict",
                       "Idempotency-Key was already used with another request") from None
    except stripe.RateLimitError:
        raise rate_limited() from None
    except stripe.StripeError as err:
        current_app.logger.error("stripe %s create failed: %s", what, err)
        raise ApiError(502, "stripe_unavailable", "payment provider unavailable, retry later") from None


def _gateway():  # type: ignore[no-untyped-def]
    from worker.stripe_gateway import StripeGateway  # gateway only; no task code

    if "gpubill_stripe" not in current_app.extensions:
        current_app.extensions["gpubill_stripe"] = StripeGateway(current_app.config["GPUBILL"])
    return current_app.extensions["gpubill_stripe"]


@bp.get("/packs")
@require_api_key
def list_packs():  # type: ignore[no-untyped-def]
    """``{"packs": [{id, price (cents), currency, credits}]}``, cheapest first."""
    packs = sorted(load_packs().values(), key=lambda p: p.price)
    return jsonify({"packs": [pack_body(p) for p in packs]})


@bp.post("/topups")
@require_api_key
def create_topup():  # type: ignore[no-untyped-def]
    """201 ``{topup_id, session_id, checkout_url, status, pack}``; 422 unknown pack or bad
    input (nothing stored); 409 an ``Idempotency-Key`` reused for another request;
    502 Stripe unreachable after the SDK's retries (nothing stored)."""
    req: TopupRequest = parse_json(TopupRequest)
    pack = load_packs().get(req.pack)
    if pack is None:
        raise ApiError(422, "invalid_request", f"unknown pack {req.pack!r}",
                       [{"field": "pack", "message": f"one of {sorted(load_packs())}"}])
    key = idempotency_key("topup", req.user_id, request.headers.get("Idempotency-Key"))
    session = stripe_create(lambda: _gateway().create_checkout_session(
        user_id=req.user_id, pack=pack, idempotency_key=key), "checkout session")
    with transaction(services.sessions()) as s:
        topup = topups.open_topup(s, session_id=session["id"], user_id=req.user_id, pack=pack)
        body = {"topup_id": topup.id, "session_id": session["id"], "checkout_url": session.get("url"),
                "status": topup.status, "pack": pack_body(pack)}
    return jsonify(body), 201
