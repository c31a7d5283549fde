"""The Stripe stand-in as a Flask app: the API subset ``stripe.StripeClient`` uses, served
at its base address, and a control surface that plays the customer, the bank and the
card network — each action sends the matching **signed** webhooks to the receiver.

API (``Authorization: Bearer sk_…``; form-encoded bodies as the SDK sends them;
Stripe's error shape ``{"error": {"type", "code", "message"}}``):
``POST/GET /v1/checkout/sessions``, ``GET /v1/checkout/sessions/{id}``,
``GET /v1/events[/{id}]``, ``GET /v1/payment_intents/{id}``, ``GET /v1/charges/{id}``,
``GET /v1/refunds[/{id}]`` (``?charge=``), ``GET /v1/disputes/{id}``, ``GET /v1/invoices/{id}``.

Control (JSON, no auth, local use only) — every action answers
``{"object": …, "events": [...], "deliveries": [status codes]}``:
``POST /_control/checkout/sessions/{id}/pay`` ``{method: card|delayed, outcome}``,
``…/{id}/settle`` ``{outcome}``, ``…/{id}/expire``, ``…/{id}/refund`` ``{amount?, list_refunds?}``,
``…/{id}/dispute`` ``{amount?}``, ``POST /_control/refunds/{id}/fail``,
``POST /_control/disputes/{id}/close`` ``{outcome: won|lost|appeal}`` (appeal: a lost one won
on appeal), ``{api_version}`` on refund/fail (before 2024-10-28: legacy refund events),
``{prevented}`` on dispute,
``POST /_control/invoices`` ``{customer, price, amount?, quantity?}``,
``POST /_control/subscriptions/{sub}/renew``, ``…/{sub}/change`` ``{price, remaining?}``
(proration invoiced at once), ``…/{sub}/cancel``. A ``mode=subscription`` session is
paid with ``…/sessions/{id}/pay`` (a subscription, its first invoice and payment);
``…/{in_id}/refund`` and ``…/{in_id}/dispute`` act on an invoice's charge.
``GET /_control/ledger``: every payment, refund, dispute and invoice issued (ground truth).
``POST /_control/idempotency/forget``: forget idempotency keys (Stripe prunes them after 24 h).
Delivery options in any action's body: ``deliver`` (default true), ``duplicate`` (send
each event twice), ``order`` (``stripe`` | ``reversed`` | ``shuffled``).
"""
from __future__ import annotations

from flask import Flask

from emulators.stripe import api, control_routes, ground_truth
from emulators.stripe.api import parse_form
from emulators.stripe.state import StripeState

__all__ = ["create_app", "parse_form"]


def create_app(*, api_key: str, webhook_secret: str, webhook_url: str | None,
               url_base: str = "http://127.0.0.1:8011") -> Flask:
    """The stand-in; its state is ``app.extensions["stripe_state"]``. API routes:
    ``api.py``; control routes: ``control_routes.py``; ground truth: ``ground_truth.py``."""
    app = Flask(__name__)
    state = StripeState(url_base)
    app.extensions["stripe_state"] = state
    ground_truth.register(app, state)
    throttle = {"left": 0}  # the next N API requests answer 429 (POST /_control/rate_limit)
    out = control_routes.Deliverer(webhook_url, webhook_secret)
    control_routes.register_admin(app, state, throttle)
    api.register_auth(app, api_key, throttle)
    api.register_checkout(app, state)
    api.register_lists(app, state)
    api.register_retrieve(app, state)
    control_routes.register_payments(app, state, out)
    control_routes.register_billing(app, state, out)
    return app
