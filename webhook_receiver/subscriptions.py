"""``GET /v1/plans`` and ``POST /v1/subscriptions``: subscribing through Stripe Checkout.

As for packs, the client names a plan id only; its Stripe Price, amount and credits are
server-side data (``pricing/plans.toml``). ``POST /v1/subscriptions {user_id, plan}``
creates a ``mode=subscription`` Checkout Session; Stripe creates the subscription when
the customer completes it, and each paid invoice grants that period's credits
(``resources.stripe_subscriptions``). ``GET /v1/wallets/{user_id}`` shows the wallet's
subscriptions once their webhooks arrived.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from base.ids import UserId
from pricing import Plan, plans_by_id
from webhook_receiver.auth import require_api_key
from webhook_receiver.errors import ApiError
from webhook_receiver.schemas import parse_json
from webhook_receiver.topups import _gateway, created_once

bp = Blueprint("subscriptions", __name__, url_prefix="/v1")


def _plan_names(schema: dict[str, Any]) -> None:
    schema["enum"] = sorted(plans_by_id())


class SubscriptionRequest(BaseModel):
    """``POST /v1/subscriptions``: ``{user_id, plan}`` — no price, ever."""

    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    # The spec lists the plans of plans.toml (an unknown one is a 422, issue 13 finding).
    plan: str = Field(min_length=1, max_length=32,
                      json_schema_extra=_plan_names)


def plan_body(p: Plan) -> dict[str, Any]:
    """``{id, price (Stripe Price id), credits, trial_credits, currency, amount (cents)}``."""
    return {"id": p.id, "price": p.price, "credits": p.credits, "trial_credits": p.trial_credits,
            "currency": p.currency, "amount": p.amount}


@bp.get("/plans")
@require_api_key
def list_plans():
    """``{"plans": [plan_body]}``, cheapest first; credits and amount are per period."""
    plans = sorted(plans_by_id().values(), key=lambda p: (p.amount, p.id))
    return jsonify({"plans": [plan_body(p) for p in plans]})


@bp.post("/subscriptions")
@require_api_key
def create_subscription():
    """201 ``{subscription_id, session_id, checkout_url, plan}``. ``subscription_id``
    is null: Stripe creates the subscription (``sub_…``) only when Checkout completes
    (it then appears in ``GET /v1/wallets/{user_id}``). 422 unknown plan or bad input;
    409 an ``Idempotency-Key`` reused for another request; 502 Stripe unreachable."""
    req: SubscriptionRequest = parse_json(SubscriptionRequest)
    plan = plans_by_id().get(req.plan)
    if plan is None:
        raise ApiError(422, "invalid_request", f"unknown plan {req.plan!r}",
                       [{"field": "plan", "message": f"one of {sorted(plans_by_id())}"}])
    def store(s: Session, session: dict[str, Any]) -> dict[str, Any]:  # no row of its own
        return {"subscription_id": session.get("subscription"), "session_id": session["id"],
                "checkout_url": session.get("url"), "plan": plan_body(plan)}

    return created_once("subscription", req.user_id, lambda key: _gateway().create_subscription_session(
        user_id=req.user_id, plan=plan, idempotency_key=key), "subscription session", store)
