"""Top-ups through Stripe Checkout, end to end: ``POST /v1/topups`` (receiver →
``stripe.StripeClient`` → Stripe stand-in over HTTP), the stand-in's signed webhooks,
the Celery worker crediting the stored top-up exactly once, in any order."""
from __future__ import annotations

import copy

import pytest
import requests

from emulators.stripe.events import new_id
from gateways.stripe import StripeGateway
from ledger.models import EventStatus, TopupStatus
from pricing import load_packs
from tests.helpers import db_event, wait_for
from tests.stripe_flows import (
    count_topups,
    event_ids,
    open_session,
    post_all,
    settle,
    topup_row,
    transactions,
    uid,
)

pytestmark = pytest.mark.integration



def test_packs_are_server_side_data(api) -> None:
    packs = api.packs()
    assert [(p["id"], p["price"], p["currency"], p["credits"]) for p in packs] == [
        ("small", 500, "usd", 500), ("medium", 2000, "usd", 2200), ("large", 3500, "usd", 4000)]


def test_topup_creates_a_checkout_session_on_our_terms(api, sessions) -> None:
    user = uid()
    r = api.create_topup(user, "medium", **{"Idempotency-Key": "buy-1"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "open" and body["pack"] == {"id": "medium", "price": 2000, "currency": "usd",
                                                          "credits": 2200}
    # Stripe's view of the session, fetched back through the SDK.
    session = StripeGateway(api.cfg).client.v1.checkout.sessions.retrieve(body["session_id"])
    assert session.mode == "payment" and session.client_reference_id == user
    assert (session.amount_total, session.currency) == (2000, "usd")
    assert session.metadata.to_dict() == {"user_id": user, "pack": "medium", "credits": "2200"}
    assert "{CHECKOUT_SESSION_ID}" in session.success_url
    assert body["checkout_url"] == session.url
    row = topup_row(sessions, body["session_id"])
    assert (row.user_id, row.pack, row.credits, row.amount_total, row.status) == (user, "medium", 2200, 2000, "open")
    # The same Idempotency-Key answers the same session (Stripe's idempotency key too).
    again = api.create_topup(user, "medium", **{"Idempotency-Key": "buy-1"})
    assert again.status_code == 201 and again.json()["session_id"] == body["session_id"]
    assert again.json()["topup_id"] == body["topup_id"]
    before = count_topups(sessions)
    other = api.create_topup(user, "small", **{"Idempotency-Key": "buy-1"})  # same key, other body
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    assert count_topups(sessions) == before
    # The PaymentIntent carries the wallet and pack (payment_intent_data.metadata).
    paid = api.stripe.pay(body["session_id"], deliver=False)
    pi = next(e["data"]["object"] for e in paid["events"] if e["type"] == "payment_intent.succeeded")
    assert pi["metadata"] == {"user_id": user, "pack": "medium", "credits": "2200"}


@pytest.mark.parametrize("body,status,field", [
    ({"user_id": "u1", "pack": "huge"}, 422, "pack"),
    ({"user_id": "u1", "pack": "small", "amount": 1}, 422, "amount"),
    ({"user_id": "u1", "pack": "small", "price": 1}, 422, "price"),
    ({"user_id": "not a user", "pack": "small"}, 422, "user_id"),
    ({"pack": "small"}, 422, "user_id"),
])
def test_bad_topup_request_is_4xx_and_stores_nothing(api, sessions, body, status, field) -> None:
    before = count_topups(sessions)
    r = api.http.post(f"{api.base}/v1/topups", json=body, timeout=10)
    assert r.status_code == status, r.text
    assert field in [f["field"] for f in r.json()["error"].get("fields", [])]
    assert count_topups(sessions) == before


def test_topup_needs_an_api_key(api, sessions) -> None:
    before = count_topups(sessions)
    r = requests.post(f"{api.base}/v1/topups", json={"user_id": "u1", "pack": "small"}, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert requests.get(f"{api.base}/v1/packs", timeout=10).status_code == 401
    assert count_topups(sessions) == before


def test_card_payment_credits_once_with_every_event_delivered_twice(api, sessions, invariants) -> None:
    user = uid()
    session_id = open_session(api, user, "large")
    paid = api.stripe.pay(session_id, duplicate=True, order="shuffled")
    assert len(paid["deliveries"]) == 6 and set(paid["deliveries"]) == {200}
    found = settle(sessions, event_ids(paid))
    assert set(found.values()) <= {EventStatus.PROCESSED, EventStatus.IGNORED}
    wait_for(lambda: api.wallet(user)["balance"] == 4000, 20, "credit")
    assert [t[:3] for t in transactions(sessions, user)] == [("topup", f"topup:{session_id}", 4000)]
    row = topup_row(sessions, session_id)
    charge = next(e["data"]["object"] for e in paid["events"] if e["type"] == "charge.succeeded")
    assert row.status == TopupStatus.CREDITED
    assert (row.payment_intent_id, row.charge_id) == (charge["payment_intent"], charge["id"])
    assert row.customer_id and row.customer_id == charge["customer"]
    invariants()


def test_delayed_payment_waits_for_the_async_result(api, sessions, invariants) -> None:
    user = uid()
    session_id = open_session(api, user, "small")
    pending = api.stripe.pay(session_id, method="delayed", outcome="pending")
    completed = next(e for e in pending["events"] if e["type"] == "checkout.session.completed")
    assert completed["data"]["object"]["payment_status"] == "unpaid"
    settle(sessions, event_ids(pending))
    assert db_event(sessions, completed["id"]).status == EventStatus.IGNORED
    assert api.wallet(user)["balance"] == 0 and topup_row(sessions, session_id).status == "open"
    succeeded = api.stripe.settle(session_id, "succeeded", duplicate=True)
    settle(sessions, event_ids(succeeded))
    assert api.wallet(user)["balance"] == 500
    assert topup_row(sessions, session_id).status == TopupStatus.CREDITED
    invariants()


def test_completed_and_async_succeeded_for_one_payment_credit_once(api, sessions, invariants) -> None:
    """The same payment as two event objects of two types, each delivered twice: one credit."""
    user = uid()
    session_id = open_session(api, user, "medium")
    result = api.stripe.pay(session_id, method="delayed", outcome="succeeded", deliver=False)
    async_ok = next(e for e in result["events"] if e["type"] == "checkout.session.async_payment_succeeded")
    as_completed = copy.deepcopy(async_ok)
    as_completed.update(id=new_id("evt"), type="checkout.session.completed")
    ids = post_all(api, [as_completed, async_ok, as_completed, async_ok, *result["events"]])
    found = settle(sessions, ids)
    assert found[as_completed["id"]] == found[async_ok["id"]] == EventStatus.PROCESSED
    assert api.wallet(user)["balance"] == 2200
    assert [t[1] for t in transactions(sessions, user)] == [f"topup:{session_id}"]
    invariants()


def test_async_failure_and_expiry_close_the_topup_without_credit(api, sessions, invariants) -> None:
    user = uid()
    failed_session, expired_session = open_session(api, user), open_session(api, user)
    failed = api.stripe.pay(failed_session, method="delayed", outcome="failed", duplicate=True)
    expired = api.stripe.expire(expired_session, duplicate=True)
    settle(sessions, event_ids(failed) + event_ids(expired))
    assert topup_row(sessions, failed_session).status == TopupStatus.FAILED
    assert topup_row(sessions, expired_session).status == TopupStatus.EXPIRED
    assert api.wallet(user)["balance"] == 0 and transactions(sessions, user) == []
    invariants()


def test_amount_mismatch_with_the_stored_topup_is_flagged_not_credited(api, sessions, invariants) -> None:
    user = uid()
    session_id = open_session(api, user, "large")
    result = api.stripe.pay(session_id, deliver=False)
    completed = next(e for e in result["events"] if e["type"] == "checkout.session.completed")
    completed["data"]["object"]["amount_total"] = 500  # paid less than the stored top-up
    post_all(api, [completed])
    assert settle(sessions, [completed["id"]])[completed["id"]] == EventStatus.FAILED
    stored = db_event(sessions, completed["id"])
    row = topup_row(sessions, session_id)
    assert row.status == TopupStatus.MISMATCH and "costs 3500 usd" in row.note
    assert stored.last_error == row.note
    assert api.wallet(user)["balance"] == 0
    invariants()


def test_sdk_reaches_the_stand_in_for_events_and_lists(api) -> None:
    """The stand-in serves the SDK unchanged through its base address."""
    user = uid()
    session_id = open_session(api, user)
    paid = api.stripe.pay(session_id)
    client = StripeGateway(api.cfg).client
    first = paid["events"][0]
    assert client.v1.events.retrieve(first["id"]).type == first["type"]
    charge = next(e["data"]["object"] for e in paid["events"] if e["type"] == "charge.succeeded")
    assert client.v1.charges.retrieve(charge["id"]).amount == load_packs()["small"].price
    listed = client.v1.checkout.sessions.list(params={"payment_intent": charge["payment_intent"]})
    assert [s.id for s in listed.data] == [session_id]
