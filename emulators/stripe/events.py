"""Build Stripe webhook events from the fixture shapes and sign them as Stripe does.

Fixtures (``fixtures/*.json``) are Stripe's own example objects (stripe/openapi
``fixtures3.json``, see fixtures/README.md). Every field is kept: real payloads carry
dozens of fields the code ignores, and it must not break on them. The body is serialised
once and those exact bytes are signed (``Stripe-Signature: t=…,v1=…``, HMAC-SHA256).
"""
from __future__ import annotations

import copy
import json
import secrets
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import stripe

FIXTURES = Path(__file__).with_name("fixtures")
API_VERSION = "2025-10-29.clover"


@lru_cache(maxsize=16)
def _fixture(name: str) -> str:
    return (FIXTURES / f"{name}.json").read_text()


def fixture(name: str) -> dict[str, Any]:
    """A fresh copy of fixture ``name`` (``checkout_session``, ``charge``, ``event`` …)."""
    return json.loads(_fixture(name))


def new_id(prefix: str) -> str:
    """A Stripe-style id, e.g. ``evt_1Q…``."""
    return f"{prefix}_{secrets.token_hex(12)}"


def paid_checkout_session(*, user_id: str, pack: str, amount_total: int, currency: str = "usd",
                          session_id: str | None = None) -> dict[str, Any]:
    """A completed, paid one-off Checkout Session for ``user_id`` buying ``pack``."""
    session = fixture("checkout_session")
    session.update(
        id=session_id or new_id("cs_test"), object="checkout.session", mode="payment",
        status="complete", payment_status="paid", amount_subtotal=amount_total,
        amount_total=amount_total, currency=currency, client_reference_id=user_id,
        metadata={"user_id": user_id, "pack": pack}, payment_intent=new_id("pi"),
        livemode=False, created=int(time.time()),
    )
    return session


def event(type: str, obj: dict[str, Any], *, livemode: bool = False,
          event_id: str | None = None) -> dict[str, Any]:
    """An ``event`` envelope (fixture shape) of ``type`` carrying ``obj``."""
    env = fixture("event")
    env.update(id=event_id or new_id("evt"), type=type, created=int(time.time()),
               livemode=livemode, api_version=API_VERSION, pending_webhooks=1,
               data={"object": copy.deepcopy(obj)})
    return env


def signed(body: dict[str, Any], secret: str, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """Serialise ``body`` once and sign those bytes: (payload, headers) ready to POST."""
    payload = json.dumps(body, separators=(",", ":"))
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)
    return payload.encode(), {"Stripe-Signature": header, "Content-Type": "application/json"}
