"""``GET /v1/packs`` and ``POST /v1/topups``: buying credits through Stripe Checkout.

The client names a pack, never an amount: price and credits are server-side data
(``pricing/packs.toml``). ``POST /v1/topups {user_id, pack}`` creates a Checkout Session
through ``stripe.StripeClient`` and stores an ``open`` top-up for it; the credits arrive
with the ``checkout.session.completed`` (or ``async_payment_succeeded``) webhook.
An ``Idempotency-Key`` header makes a retried request answer the same session, also
after Stripe has forgotten the key (``created_once``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import stripe
from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from base.ids import UserId
from gateways.stripe import idempotency_key
from ledger import topups
from ledger.db import transaction
from pricing import Pack, load_packs
from webhook_receiver import idempotency, resources
from webhook_receiver.auth import require_api_key
from webhook_receiver.errors import ApiError
from webhook_receiver.schemas import parse_json

bp = Blueprint("topups", __name__, url_prefix="/v1")


def _pack_names(schema: dict[str, Any]) -> None:
    schema["enum"] = sorted(load_packs())


class TopupRequest(BaseModel):
    """``POST /v1/topups``: ``{user_id, pack}`` — no amount, ever."""

    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    # The spec lists the packs of packs.toml (an unknown one is a 422, issue 13 finding).
    pack: str = Field(min_length=1, max_length=32,
                      json_schema_extra=_pack_names)


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


CONFLICT = "idempotency_conflict"  # the code these routes always answered for a reused key


class _Replayed(Exception):
    def __init__(self, answer: idempotency.Answer) -> None:
        super().__init__("replayed")
        self.answer = answer


def created_once(kind: str, user_id: str, create: Callable[[str], dict[str, Any]], what: str,
                 store: Callable[[Session, dict[str, Any]], dict[str, Any]]) -> ResponseReturnValue:
    """201 with ``store``'s body for the Checkout Session ``create(stripe_key)`` makes.

    With an ``Idempotency-Key`` gpubill's own record is the idempotency record (issue 12
    case 9): Stripe prunes idempotency keys after 24 hours
    (https://docs.stripe.com/api/idempotent_requests), so a retry a day later would make a
    second session. The first 201 is stored (``idempotency_keys``, scoped by API key,
    keyed by the Stripe key ``gpubill-{kind}:`` + SHA-256 of [user, key], kept forever) in
    the same transaction as the rows ``store`` writes, and replayed for the same body
    (``Idempotent-Replayed: true``); another body is 409 ``idempotency_conflict``, as
    when Stripe itself refuses the key."""
    client_key = request.headers.get("Idempotency-Key")
    key = idempotency_key(kind, user_id, client_key)
    request_hash = idempotency.body_hash(request.get_json())
    if client_key is not None:
        with transaction(resources.sessions()) as s:
            first = idempotency.first_answer(s, key, request_hash, CONFLICT)
        if first is not None:
            return idempotency.replayed(first)
    session = stripe_create(lambda: create(key), what)
    try:
        with transaction(resources.sessions()) as s:
            body = store(s, session)
            if client_key is not None:
                first = idempotency.claim(s, key, request_hash, idempotency.Answer(201, body), None, CONFLICT)
                if first is not None:  # a concurrent twin answered first: roll back, replay it
                    raise _Replayed(first)
    except _Replayed as twin:
        return idempotency.replayed(twin.answer)
    return jsonify(body), 201


def _gateway():
    from gateways.stripe import StripeGateway  # gateway only; no task code

    if "gpubill_stripe" not in current_app.extensions:
        current_app.extensions["gpubill_stripe"] = StripeGateway(current_app.config["GPUBILL"])
    return current_app.extensions["gpubill_stripe"]


@bp.get("/packs")
@require_api_key
def list_packs():
    """``{"packs": [{id, price (cents), currency, credits}]}``, cheapest first."""
    packs = sorted(load_packs().values(), key=lambda p: p.price)
    return jsonify({"packs": [pack_body(p) for p in packs]})


@bp.post("/topups")
@require_api_key
def create_topup():
    """201 ``{topup_id, session_id, checkout_url, status, pack}``; 422 unknown pack or bad
    input (nothing stored); 409 an ``Idempotency-Key`` reused for another request;
    502 Stripe unreachable after the SDK's retries (nothing stored)."""
    req: TopupRequest = parse_json(TopupRequest)
    pack = load_packs().get(req.pack)
    if pack is None:
        raise ApiError(422, "invalid_request", f"unknown pack {req.pack!r}",
                       [{"field": "pack", "message": f"one of {sorted(load_packs())}"}])
    def store(s: Session, session: dict[str, Any]) -> dict[str, Any]:
        topup = topups.open_topup(s, session_id=session["id"], user_id=req.user_id, pack=pack)
        return {"topup_id": topup.id, "session_id": session["id"], "checkout_url": session.get("url"),
                "status": topup.status, "pack": pack_body(pack)}

    return created_once("topup", req.user_id, lambda key: _gateway().create_checkout_session(
        user_id=req.user_id, pack=pack, idempotency_key=key), "checkout session", store)
