"""Hostile input, generated: random, truncated and re-signed bodies to both webhooks and
to the app's API never get a 5xx and never store anything they should not.

Hypothesis generates the inputs (its failing example is printed and replayed by
``--hypothesis-seed``). The hand-picked cases live in
tests/webhook_receiver/test_receiver_input.py; these cover what nobody thought of.
"""
from __future__ import annotations

import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st

from emulators.stripe import events as se
from tests.webhook_receiver.test_receiver_input import counts

pytestmark = pytest.mark.integration
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)



@FUZZ
@given(cut=st.floats(min_value=0, max_value=0.999), resign=st.booleans())
def test_truncated_stripe_events_are_refused_and_store_nothing(api, sessions, cut, resign) -> None:
    before = counts(sessions)
    body = se.event("checkout.session.completed",
                    se.paid_checkout_session(user_id="fuzz", pack="small", amount_total=500))
    payload, headers = se.signed(body, api.secret)
    truncated = payload[: int(len(payload) * cut)]
    if resign:  # a valid signature over the broken bytes: the JSON check must catch it
        headers["Stripe-Signature"] = se.stripe.WebhookSignature.generate_signature_header(
            truncated.decode(errors="ignore"), api.secret)
        truncated = truncated.decode(errors="ignore").encode()
    r = api.post_stripe_raw(truncated, headers)
    assert r.status_code == 400, r.text
    assert counts(sessions) == before


@FUZZ
@given(raw=st.binary(max_size=2048), signed=st.booleans())
def test_random_bytes_to_the_stripe_webhook_are_4xx(api, sessions, raw, signed) -> None:
    before = counts(sessions)
    headers = {"Content-Type": "application/json"}
    if signed:
        text = raw.decode(errors="ignore")
        headers["Stripe-Signature"] = se.stripe.WebhookSignature.generate_signature_header(text, api.secret)
        raw = text.encode()
    r = api.post_stripe_raw(raw, headers)
    assert 400 <= r.status_code < 500, r.text
    if not signed:
        assert counts(sessions) == before


@FUZZ
@given(token=st.text(max_size=80), body=st.binary(max_size=1024))
def test_random_runpod_callbacks_are_404_and_change_nothing(api, sessions, token, body) -> None:
    before = counts(sessions)
    r = requests.post(f"{api.base}/webhooks/runpod/{requests.utils.quote(token, safe='')}",
                      data=body, timeout=10)
    assert r.status_code in (404, 405), r.text  # an empty token is no route for POST
    assert counts(sessions) == before


@FUZZ
@given(body=json_values)
def test_random_job_requests_never_5xx(api, sessions, body) -> None:
    before = counts(sessions)
    r = api.http.post(f"{api.base}/v1/jobs", data=json.dumps(body), timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 402, 422), r.text
    assert r.json()["error"]["code"]
    assert counts(sessions) == before
