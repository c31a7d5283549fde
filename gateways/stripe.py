"""Outbound Stripe calls through ``stripe.StripeClient`` (docs/architecture.md "Stripe").

One client per process, built from settings: the secret key, the API base address
(``GPUBILL_STRIPE_API_BASE``: the local stand-in by default, ``https://api.stripe.com``
in production) and an explicit ``max_network_retries`` — the SDK then retries
connection errors, 409, 5xx and answers carrying ``Stripe-Should-Retry: true``, with
backoff, sending the same ``Idempotency-Key`` each time so a retried create never makes
two objects. It does **not** retry a plain 429 (stripe-python 16,
``_http_client._should_retry``); gpubill decides: the receiver answers 503
``stripe_rate_limited`` (nothing stored, the client retries with
its Idempotency-Key), the worker retries its task with backoff (``RateLimitError`` is
in ``worker.tasks.stripe.TRANSIENT``).

Used by the receiver (create Checkout Sessions for ``POST /v1/topups``) and by the
worker (re-fetch a charge's refunds when ``charge.refunded`` does not list them).
"""
from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import stripe

from base.settings import Settings
from pricing import Pack, Plan

# (connect, read) seconds per attempt. The SDK's default read timeout is 80 s; a
# receiver thread waiting that long (times the retries) for a top-up is worse than a
# 502 the app can retry with the same Idempotency-Key.
TIMEOUT_S = (5.0, 20.0)


def make_client(cfg: Settings) -> stripe.StripeClient:
    """A ``StripeClient`` for ``cfg``'s key, base address and retry count."""
    return stripe.StripeClient(
        cfg.stripe_secret_key.get_secret_value(),
        base_addresses={"api": cfg.stripe_api_base.rstrip("/")},
        max_network_retries=cfg.stripe_max_network_retries,
        http_client=stripe.RequestsClient(timeout=TIMEOUT_S),
    )


def idempotency_key(kind: str, user_id: str, client_key: str | None) -> str:
    """Stripe ``Idempotency-Key`` for a create on behalf of ``user_id``: ``gpubill-{kind}:``
    + SHA-256 of the JSON pair ``[user_id, client_key]`` (a fresh UUID without one).

    At most 87 characters whatever the client sends (Stripe allows 255 —
    https://docs.stripe.com/api/idempotent_requests), and collision-free across users:
    the pair is JSON-encoded, so ``("a", "b:c")`` and ``("a:b", "c")`` differ.
    """
    pair = json.dumps([user_id, client_key or uuid.uuid4().hex])
    return f"gpubill-{kind}:{hashlib.sha256(pair.encode()).hexdigest()}"


class StripeGateway:
    """The Stripe operations gpubill performs. Errors are the SDK's ``stripe.StripeError``
    subclasses (``APIConnectionError`` after the retries, ``IdempotencyError`` …)."""

    def __init__(self, cfg: Settings) -> None:
        self.cfg = cfg
        self.client = make_client(cfg)

    def create_checkout_session(self, *, user_id: str, pack: Pack,
                                idempotency_key: str) -> dict[str, Any]:
        """A ``mode=payment`` Checkout Session selling ``pack`` to wallet ``user_id``.

        The price is the pack's (cents, currency) — never a client's figure; the wallet
        and pack are in ``client_reference_id`` and metadata, copied to the
        PaymentIntent (``payment_intent_data.metadata``) so charges, refunds and
        disputes carry them too. Returns the session as a dict (``id``, ``url``, …).
        """
        metadata = {"user_id": user_id, "pack": pack.id, "credits": str(pack.credits)}
        session = self.client.v1.checkout.sessions.create(params={
            "mode": "payment",
            "client_reference_id": user_id,
            "customer_creation": "always",  # a customer to link subscription invoices to
            "line_items": [{"quantity": 1, "price_data": {
                "currency": pack.currency, "unit_amount": pack.price,
                "product_data": {"name": f"gpubill credits: {pack.credits} ({pack.id})"},
            }}],
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "success_url": self.cfg.stripe_success_url,
            "cancel_url": self.cfg.stripe_cancel_url,
        }, options={"idempotency_key": idempotency_key})
        return session.to_dict()

    def create_subscription_session(self, *, user_id: str, plan: Plan,
                                    idempotency_key: str) -> dict[str, Any]:
        """A ``mode=subscription`` Checkout Session subscribing wallet ``user_id`` to
        ``plan`` (its Stripe Price, server-side; never a client's figure).

        The wallet and plan go in ``client_reference_id``, metadata and
        ``subscription_data.metadata`` — Stripe copies the latter to every invoice's
        ``parent.subscription_details.metadata``, so an invoice names its wallet even
        before the session's completion is seen. Returns the session as a dict.
        """
        metadata = {"user_id": user_id, "plan": plan.id}
        session = self.client.v1.checkout.sessions.create(params={
            "mode": "subscription",
            "client_reference_id": user_id,
            "line_items": [{"price": plan.price, "quantity": 1}],
            "metadata": metadata,
            "subscription_data": {"metadata": metadata},
            "success_url": self.cfg.stripe_success_url,
            "cancel_url": self.cfg.stripe_cancel_url,
        }, options={"idempotency_key": idempotency_key})
        return session.to_dict()

    def refunds_of_charge(self, charge_id: str) -> list[dict[str, Any]]:
        """Every refund of ``charge_id`` (auto-paginated), as dicts."""
        page = self.client.v1.refunds.list(params={"charge": charge_id, "limit": 100})
        return [r.to_dict() for r in page.auto_paging_iter()]
