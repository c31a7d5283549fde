"""The receiver reads ``Stripe-Signature`` only through the stripe SDK's parser; these
pin the SDK behaviour it relies on (stripe-python 16, ``stripe/_webhook.py``)."""
from __future__ import annotations

import time

import pytest
import stripe

from webhook_receiver.stripe_webhooks import signed_at

SECRET = "whsec_" + "k" * 32


def test_signed_at_is_the_timestamp_the_sdk_verified() -> None:
    now = int(time.time())
    payload = "{}"
    v1 = stripe.WebhookSignature.generate_signature_header(payload, SECRET, now + 100_000).split(",")[1]
    header = f"{v1}, t={now},t={now + 100_000}"
    assert stripe.WebhookSignature.verify_header(payload, header, SECRET, 300)  # the SDK takes it…
    assert signed_at(header) == now + 100_000  # …against this timestamp, which the future check sees


def test_a_non_ascii_digit_timestamp_is_refused_by_the_sdk() -> None:
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header("{}", "t=²,v1=00", SECRET, 300)
