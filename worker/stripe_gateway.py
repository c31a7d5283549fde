"""Outbound Stripe calls through ``stripe.StripeClient`` (design.md "Stripe").

One client per process, built from settings: the secret key, the API base address
(``GPUBILL_STRIPE_API_BASE``: the local stand-in by default, ``https://api.stripe.com``
in production) and an explicit ``max_network_retries`` — the SDK then retries
connection errors, 409, 429 and 5xx answers with backoff, sending the same
``Idempotency-Key`` each time so a retried create never makes two objects.

Used by the receiver (create Checkout Sessions for ``POST /v1/topups``) and by the
worker (re-fetch a charge's refunds when ``charge.refunded`` does not list them).
"""
from __future__ import annotations

from typing import Any

import stripe

from gpubill.settings import Settings
from pricing import Pack

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

    def refunds_of_charge(self, charge_id: str) -> list[dict[str, Any]]:
        """Every refund of ``charge_id`` (auto-paginated), as dicts."""
        page = self.client.v1.refunds.list(params={"charge": charge_id, "limit": 100})
        return [r.to_dict() for r in page.auto_paging_iter()]
