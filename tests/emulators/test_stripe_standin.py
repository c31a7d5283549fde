"""The Stripe stand-in over real HTTP, driven by the official ``stripe`` SDK
(``stripe.StripeClient`` pointed at its base address) and by its control surface, whose
webhooks land on a local sink that verifies them as a Stripe endpoint would."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from emulators.stripe.app import create_app, parse_form
from emulators.stripe.control import StandInError, StripeStandIn
from emulators.stripe.server import start_in_thread, stop

KEY, SECRET = "sk_test_standin", "whsec_standin"


class Sink:
    """Receives webhooks and verifies each signature with the SDK (tolerance 300 s)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.server = make_server("127.0.0.1", 0, self, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/webhooks/stripe"

    def __call__(self, environ: Any, start_response: Any) -> Any:
        req = Request(environ)
        try:
            stripe.Webhook.construct_event(req.get_data(), req.headers.get("Stripe-Signature", ""),
                                                SECRET, tolerance=300)
        except (ValueError, stripe.SignatureVerificationError):
            return Response("bad signature", 400)(environ, start_response)
        with self.lock:
            self.events.append(json.loads(req.get_data()))
        return Response("{}", 200)(environ, start_response)

    def types(self) -> list[str]:
        with self.lock:
            return [e["type"] for e in self.events]


@pytest.fixture
def env() -> Iterator[tuple[stripe.StripeClient, StripeStandIn, Sink]]:
    sink = Sink()
    app = create_app(api_key=KEY, webhook_secret=SECRET, webhook_url=sink.url)
    server, thread = start_in_thread(app)
    base = f"http://127.0.0.1:{server.server_port}"
    client = stripe.StripeClient(KEY, base_addresses={"api": base}, max_network_retries=0)
    yield client, StripeStandIn(base), sink
    stop(server, thread)
    sink.server.shutdown()


def create(client: stripe.StripeClient, amount: int = 2000, key: str | None = None, user: str = "u1") -> Any:
    return client.v1.checkout.sessions.create(params={
        "mode": "payment", "client_reference_id": user, "metadata": {"user_id": user, "pack": "medium"},
        "payment_intent_data": {"metadata": {"user_id": user}},
        "line_items": [{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": amount,
                                                      "product_data": {"name": "credits"}}}],
        "success_url": "https://app.test/ok?session_id={CHECKOUT_SESSION_ID}",
    }, options={"idempotency_key": key} if key else None)


def test_form_encoding_round_trips() -> None:
    assert parse_form([("a[b][0][c]", "1"), ("a[b][0][d]", "x"), ("a[b][1][c]", "2"), ("m", "v")]) == {
        "a": {"b": [{"c": "1", "d": "x"}, {"c": "2"}]}, "m": "v"}


def test_sdk_creates_retrieves_and_lists_sessions(env) -> None:
    client, _, _ = env
    s = create(client)
    assert (s.object, s.mode, s.status, s.payment_status) == ("checkout.session", "payment", "open", "unpaid")
    assert (s.amount_total, s.currency, s.client_reference_id) == (2000, "usd", "u1")
    assert s.metadata.to_dict() == {"user_id": "u1", "pack": "medium"}
    assert s.url.endswith(f"/pay/{s.id}") and "{CHECKOUT_SESSION_ID}" in s.success_url
    assert client.v1.checkout.sessions.retrieve(s.id).id == s.id
    other = create(client, 500)
    listed = client.v1.checkout.sessions.list(params={"limit": 1})
    assert [x.id for x in listed.data] == [other.id] and listed.has_more
    assert [x.id for x in listed.auto_paging_iter()] == [other.id, s.id]


def test_idempotency_keys_and_errors_speak_stripes_shapes(env) -> None:
    client, ctl, _ = env
    first = create(client, key="k-1")
    assert create(client, key="k-1").id == first.id
    with pytest.raises(stripe.IdempotencyError):
        create(client, amount=999, key="k-1")
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.charges.retrieve("ch_missing")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    bad = stripe.StripeClient("sk_test_wrong", base_addresses={"api": ctl.base})
    with pytest.raises(stripe.AuthenticationError):
        bad.v1.checkout.sessions.list()


def test_card_payment_sends_signed_webhooks_and_links_objects(env) -> None:
    client, ctl, sink = env
    s = create(client)
    result = ctl.pay(s.id)
    assert result["deliveries"] == [200, 200, 200]
    assert sink.types() == ["charge.succeeded", "payment_intent.succeeded", "checkout.session.completed"]
    session = client.v1.checkout.sessions.retrieve(s.id)
    assert (session.status, session.payment_status) == ("complete", "paid")
    pi = client.v1.payment_intents.retrieve(session.payment_intent)
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount, charge.payment_intent, pi.metadata.to_dict()) == (2000, pi.id, {"user_id": "u1"})
    assert client.v1.events.retrieve(sink.events[-1]["id"]).type == "checkout.session.completed"
    with pytest.raises(StandInError):
        ctl.pay(s.id)  # already paid


def test_delayed_payment_expiry_and_delivery_options(env) -> None:
    client, ctl, sink = env
    ok, bad, gone = create(client), create(client), create(client)
    ctl.pay(ok.id, method="delayed", outcome="pending")
    assert sink.types()[-1] == "checkout.session.completed"
    assert sink.events[-1]["data"]["object"]["payment_status"] == "unpaid"
    ctl.settle(ok.id, "succeeded")
    assert sink.types()[-1] == "checkout.session.async_payment_succeeded"
    ctl.pay(bad.id, method="delayed", outcome="failed")
    assert sink.types()[-1] == "checkout.session.async_payment_failed"
    twice = ctl.expire(gone.id, duplicate=True)
    assert len(twice["deliveries"]) == 2 and sink.types()[-2:] == ["checkout.session.expired"] * 2
    quiet = ctl.pay(create(client).id, deliver=False)
    assert quiet["deliveries"] == [] and len(quiet["events"]) == 3
    before = len(sink.events)
    backwards = ctl.pay(create(client).id, order="reversed")
    assert [e["type"] for e in sink.events[before:]] == [e["type"] for e in reversed(backwards["events"])]


def test_refunds_disputes_and_invoices(env) -> None:
    client, ctl, _ = env
    s = create(client)
    ctl.pay(s.id)
    r1 = ctl.refund(s.id, 500)
    assert [e["type"] for e in r1["events"]] == ["refund.created", "charge.refunded"]
    charge = r1["events"][1]["data"]["object"]
    assert charge["amount_refunded"] == 500 and "refunds" not in charge  # as API versions ≥ 2022-11-15
    r2 = ctl.refund(s.id, 300, list_refunds=True)
    assert r2["events"][1]["data"]["object"]["amount_refunded"] == 800
    listed = client.v1.refunds.list(params={"charge": charge["id"]})
    assert sorted(r.amount for r in listed.data) == [300, 500]
    rid = r1["events"][0]["data"]["object"]["id"]
    failed = ctl.fail_refund(rid)
    assert [e["type"] for e in failed["events"]] == ["refund.updated", "refund.failed"]
    assert client.v1.refunds.retrieve(rid).status == "failed"
    assert client.v1.charges.retrieve(charge["id"]).amount_refunded == 300
    with pytest.raises(StandInError):
        ctl.refund(s.id, 5000)  # more than is left
    dp = ctl.dispute(s.id)
    assert [e["type"] for e in dp["events"]] == ["charge.dispute.created", "charge.dispute.funds_withdrawn"]
    assert dp["object"]["amount"] == 1700
    won = ctl.close_dispute(dp["object"]["id"], "won")
    assert [e["type"] for e in won["events"]] == ["charge.dispute.funds_reinstated", "charge.dispute.closed"]
    assert client.v1.disputes.retrieve(dp["object"]["id"]).status == "won"
    inv = ctl.pay_invoice("cus_1", "price_gpubill_pro_monthly", quantity=2)
    assert [e["type"] for e in inv["events"]] == ["invoice.paid", "invoice.payment_succeeded"]
    line = client.v1.invoices.retrieve(inv["object"]["id"]).lines.data[0]
    assert (line.pricing.price_details.price, line.quantity) == ("price_gpubill_pro_monthly", 2)
    assert all(code == 200 for code in r1["deliveries"] + dp["deliveries"] + inv["deliveries"])
