"""Subscriptions end to end (issue 12, cases 1–3): ``GET /v1/plans``, ``POST
/v1/subscriptions`` → Stripe stand-in Checkout (``mode=subscription``) → signed webhooks
→ worker. Expected credits come from ``pricing/plans.toml`` and the amounts the stand-in
reports it invoiced, never from columns the code wrote."""
from __future__ import annotations

import pytest
import requests

from emulators.stripe.events import new_id
from gateways.stripe import StripeGateway
from pricing import plans_by_id
from tests.helpers import Api
from tests.stripe_flows import count_topups, event_ids, post_all, settle, uid

pytestmark = pytest.mark.integration
PLANS = plans_by_id()


def subscribe(api: Api, user: str, plan: str) -> dict:
    r = api.http.post(f"{api.base}/v1/subscriptions", json={"user_id": user, "plan": plan}, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def wallet(api: Api, user: str) -> dict:
    r = api.http.get(f"{api.base}/v1/wallets/{user}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def invoiced(result: dict) -> list[dict]:
    """The plan lines of every invoice the stand-in issued in ``result``."""
    return [ln for e in result["events"] if e["type"] == "invoice.paid"
            for ln in e["data"]["object"]["lines"]["data"]]


def test_plans_are_server_side_data(api) -> None:
    r = api.http.get(f"{api.base}/v1/plans", timeout=10)
    assert r.status_code == 200, r.text
    assert [(p["id"], p["price"], p["amount"], p["credits"]) for p in r.json()["plans"]] == [
        ("starter", "price_gpubill_starter_monthly", 1000, 1000), ("pro", "price_gpubill_pro_monthly", 5000, 5000)]


@pytest.mark.parametrize("body", [{"user_id": "u1", "plan": "gold"}, {"user_id": "u1", "plan": "pro", "price": 1},
                                  {"plan": "pro"}])
def test_bad_subscription_request_is_422(api, body) -> None:
    r = api.http.post(f"{api.base}/v1/subscriptions", json=body, timeout=10)
    assert r.status_code == 422, r.text


def test_new_customer_subscribes_is_credited_each_period_and_upgrades_pro_rata(api, sessions, invariants) -> None:
    """Case 2 (a new customer's subscription Checkout links the customer) and case 1
    (a full period grants the plan's credits; an upgrade's proration its share,
    rounded down; a negative proration line takes its share back)."""
    user = uid("sub")
    created = subscribe(api, user, "starter")
    assert created["checkout_url"] and created["session_id"].startswith("cs_")
    paid = api.stripe.pay(created["session_id"], duplicate=True, order="shuffled")
    settle(sessions, event_ids(paid))
    expected = PLANS["starter"].credits
    assert wallet(api, user)["balance"] == expected
    sub_id = next(e["data"]["object"]["id"] for e in paid["events"] if e["type"] == "customer.subscription.created")
    subs = wallet(api, user)["subscriptions"]
    assert [(s["id"], s["plan"], s["status"]) for s in subs] == [(sub_id, "starter", "active")]
    assert subs[0]["current_period_end"]

    renewed = api.stripe.subscription(sub_id, "renew")
    settle(sessions, event_ids(renewed))
    expected += PLANS["starter"].credits
    assert wallet(api, user)["balance"] == expected

    upgraded = api.stripe.subscription(sub_id, "change", price=PLANS["pro"].price, remaining=0.8)
    settle(sessions, event_ids(upgraded))
    lines = {ln["pricing"]["price_details"]["price"]: ln["amount"] for ln in invoiced(upgraded)}
    starter, pro = PLANS["starter"], PLANS["pro"]
    back = -(-starter.credits * -lines[starter.price] // starter.amount)   # ceil, taken back
    forward = pro.credits * lines[pro.price] // pro.amount                # floor, granted
    assert (lines[starter.price], lines[pro.price]) == (-800, 4000)
    expected += forward - back
    assert wallet(api, user)["balance"] == expected == 1000 + 1000 + 4000 - 800
    assert wallet(api, user)["subscriptions"][0]["plan"] == "pro"

    canceled = api.stripe.subscription(sub_id, "cancel")
    settle(sessions, event_ids(canceled))
    assert wallet(api, user)["subscriptions"][0]["status"] == "canceled"
    assert wallet(api, user)["balance"] == expected
    invariants()


def ceil_share(credits: int, taken: int, paid: int) -> int:
    """The claw-back of ``taken`` cents of an invoice that paid ``paid`` cents for
    ``credits`` credits: ceil(credits × taken / paid) (docs/stripe-money.md)."""
    return -(-credits * taken // paid)


def test_one_customer_from_checkout_to_a_won_appeal(api, sessions, invariants) -> None:
    """Issue 12's whole story on one wallet, checked against a hand computation after
    every step: a new customer subscribes through Checkout (starter), is credited each
    period, upgrades (the proration invoice credited pro rata), gets a partial refund of
    that invoice (clawed back once, though delivered twice) and a dispute of the first
    invoice (withdrawn, lost, then reinstated after a won appeal). Amounts come from
    ``pricing/plans.toml`` and what the stand-in invoiced."""
    starter, pro = PLANS["starter"], PLANS["pro"]
    user = uid("story")
    paid = api.stripe.pay(subscribe(api, user, "starter")["session_id"], duplicate=True)
    settle(sessions, event_ids(paid))
    expected = starter.credits
    assert wallet(api, user)["balance"] == expected
    first = next(e["data"]["object"] for e in paid["events"] if e["type"] == "invoice.paid")
    sub_id = next(e["data"]["object"]["id"] for e in paid["events"] if e["type"] == "customer.subscription.created")

    settle(sessions, event_ids(api.stripe.subscription(sub_id, "renew", duplicate=True)))
    expected += starter.credits
    assert wallet(api, user)["balance"] == expected

    upgraded = api.stripe.subscription(sub_id, "change", price=pro.price, remaining=0.5)
    settle(sessions, event_ids(upgraded))
    lines = {ln["pricing"]["price_details"]["price"]: ln["amount"] for ln in invoiced(upgraded)}
    granted = pro.credits * lines[pro.price] // pro.amount - ceil_share(starter.credits, -lines[starter.price],
                                                                         starter.amount)
    expected += granted
    assert wallet(api, user)["balance"] == expected
    proration = next(e["data"]["object"] for e in upgraded["events"] if e["type"] == "invoice.paid")
    assert proration["amount_paid"] == lines[pro.price] + lines[starter.price]

    refunded = api.stripe.refund(proration["id"], 700, duplicate=True, order="shuffled")
    settle(sessions, event_ids(refunded))
    expected -= ceil_share(granted, 700, proration["amount_paid"])
    assert wallet(api, user)["balance"] == expected

    disputed = api.stripe.dispute(first["id"])  # the whole first invoice
    settle(sessions, event_ids(disputed))
    taken = ceil_share(starter.credits, first["amount_paid"], first["amount_paid"])
    assert wallet(api, user)["balance"] == expected - taken
    dp = disputed["object"]["id"]
    settle(sessions, event_ids(api.stripe.close_dispute(dp, "lost", duplicate=True)))
    assert wallet(api, user)["balance"] == expected - taken
    settle(sessions, event_ids(api.stripe.close_dispute(dp, "appeal", duplicate=True, order="shuffled")))
    assert wallet(api, user)["balance"] == expected
    invariants()


def test_invoice_before_the_checkout_completion_still_credits_once(api, sessions, invariants) -> None:
    """The first invoice may arrive before ``checkout.session.completed``: the
    subscription's metadata (``parent.subscription_details``) names the wallet."""
    user = uid("early")
    created = subscribe(api, user, "pro")
    paid = api.stripe.pay(created["session_id"], deliver=False)
    ids = post_all(api, list(reversed(paid["events"])) * 2)
    settle(sessions, ids)
    assert wallet(api, user)["balance"] == PLANS["pro"].credits
    invariants()


def test_refund_of_an_invoice_charge_claws_back_its_share_once(api, sessions, invariants) -> None:
    """Case 3: the invoice is linked to its PaymentIntent by ``invoice_payment.paid``;
    a partial refund claws back ceil(credits × refunded / paid), once; a dispute of the
    same charge is withdrawn, lost, then reinstated after a won appeal (case 7)."""
    user = uid("ref")
    created = subscribe(api, user, "pro")
    paid = api.stripe.pay(created["session_id"])
    settle(sessions, event_ids(paid))
    invoice = next(e["data"]["object"] for e in paid["events"] if e["type"] == "invoice.paid")
    refunded = api.stripe.refund(invoice["id"], 1250, duplicate=True, order="shuffled")
    settle(sessions, event_ids(refunded))
    pro = PLANS["pro"]
    assert wallet(api, user)["balance"] == pro.credits - (-(-pro.credits * 1250 // invoice["amount_paid"]))
    disputed = api.stripe.dispute(invoice["id"], 1000)
    settle(sessions, event_ids(disputed))
    assert wallet(api, user)["balance"] == pro.credits - 1250 - 1000
    # Case 7: the dispute is lost (stays clawed back), then won on appeal (reinstated).
    dp = disputed["object"]["id"]
    settle(sessions, event_ids(api.stripe.close_dispute(dp, "lost")))
    assert wallet(api, user)["balance"] == pro.credits - 1250 - 1000
    settle(sessions, event_ids(api.stripe.close_dispute(dp, "appeal", order="shuffled")))
    assert wallet(api, user)["balance"] == pro.credits - 1250
    # The stand-in's ground truth: what it charged, refunded and saw disputed.
    truth = requests.get(f"{api.stripe.base}/_control/ledger", timeout=10).json()
    inv = next(i for i in truth["invoices"] if i["id"] == invoice["id"])
    assert inv["amount_paid"] == pro.amount and inv["charge"]
    assert [r["amount"] for r in truth["refunds"] if r["charge"] == inv["charge"]] == [1250]
    assert [d["amount"] for d in truth["disputes"] if d["charge"] == inv["charge"]] == [1000]
    invariants()


def test_zero_invoice_grants_only_trial_credits_and_a_trial_checkout_links_the_customer(
        api, sessions, invariants) -> None:
    """Case 1's $0 trial invoice (it granted the pro plan's 5,000 credits) and case 2's
    trial Checkout (``payment_status = no_payment_required``): the customer is linked,
    the $0 invoice grants ``trial_credits`` (0 by default)."""
    user = uid("trial")
    created = subscribe(api, user, "pro")
    paid = api.stripe.pay(created["session_id"], deliver=False)
    completed = next(e for e in paid["events"] if e["type"] == "checkout.session.completed")
    trial = {**completed, "id": new_id("evt")}
    trial["data"] = {"object": {**completed["data"]["object"], "payment_status": "no_payment_required",
                                "amount_total": 0}}
    settle(sessions, post_all(api, [trial]))
    customer = completed["data"]["object"]["customer"]
    zero = api.stripe.pay_invoice(customer, PLANS["pro"].price, amount=0)
    settle(sessions, event_ids(zero))
    assert wallet(api, user)["balance"] == PLANS["pro"].trial_credits == 0
    assert [s["status"] for s in wallet(api, user)["subscriptions"]] == ["trialing"]
    invariants()


def test_invoice_marked_paid_out_of_band_grants_only_what_stripe_collected(api, sessions, invariants) -> None:
    """Case 1: ``invoice.paid`` also fires for an invoice marked paid out of band; the
    pro line (5,000 credits for 5,000 cents) then grants in proportion to
    ``amount_paid``: 0 collected → 0 credits, 1,250 collected → 1,250 credits."""
    user = uid("oob")
    created = subscribe(api, user, "starter")
    paid = api.stripe.pay(created["session_id"])
    settle(sessions, event_ids(paid))
    base = wallet(api, user)["balance"]
    customer = next(e["data"]["object"]["customer"] for e in paid["events"]
                    if e["type"] == "checkout.session.completed")
    pro = PLANS["pro"]
    events = []
    for collected in (0, 1250):
        issued = api.stripe.pay_invoice(customer, pro.price, deliver=False)
        ev = next(e for e in issued["events"] if e["type"] == "invoice.paid")
        ev["data"]["object"].update(amount_paid=collected, paid_out_of_band=True)
        events.append(ev)
    settle(sessions, post_all(api, events))
    assert wallet(api, user)["balance"] == base + pro.credits * 1250 // pro.amount
    invariants()


def test_topup_idempotency_keys_are_short_and_per_user(api) -> None:
    """Case 9: a 300-character client key still works (Stripe allows 255), and user
    ``a`` + key ``b:c`` and user ``a:b`` + key ``c`` make two sessions (they collided)."""
    long = api.create_topup(uid("long"), "small", **{"Idempotency-Key": "k" * 300})
    assert long.status_code == 201, long.text
    a = uid("a")
    first = api.create_topup(a, "small", **{"Idempotency-Key": "b:c"})
    second = api.create_topup(f"{a}:b", "small", **{"Idempotency-Key": "c"})
    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert first.json()["session_id"] != second.json()["session_id"]


def test_a_retry_after_stripe_forgot_the_key_answers_the_first_session(api, sessions) -> None:
    """Case 9: Stripe prunes idempotency keys after 24 h, so a retry a day later would
    make a second Checkout Session. gpubill's own record answers it: the same 201 body
    (replayed), no new top-up row, no new session at Stripe; another body is 409."""
    user = uid("day")
    first = api.create_topup(user, "small", **{"Idempotency-Key": "retry-1"})
    sub = api.http.post(f"{api.base}/v1/subscriptions", json={"user_id": user, "plan": "pro"},
                        headers={"Idempotency-Key": "retry-1"}, timeout=10)
    assert (first.status_code, sub.status_code) == (201, 201), sub.text
    topups_before = count_topups(sessions)
    forgot = requests.post(f"{api.stripe.base}/_control/idempotency/forget", timeout=10)  # a day later
    assert forgot.json()["forgotten"] >= 2
    again = api.create_topup(user, "small", **{"Idempotency-Key": "retry-1"})
    sub_again = api.http.post(f"{api.base}/v1/subscriptions", json={"user_id": user, "plan": "pro"},
                              headers={"Idempotency-Key": "retry-1"}, timeout=10)
    assert (again.status_code, again.json()) == (201, first.json())
    assert (sub_again.status_code, sub_again.json()) == (201, sub.json())
    assert again.headers["Idempotent-Replayed"] == sub_again.headers["Idempotent-Replayed"] == "true"
    assert count_topups(sessions) == topups_before
    at_stripe = [cs for cs in StripeGateway(api.cfg).client.v1.checkout.sessions.list(
        params={"limit": 100}).auto_paging_iter() if cs.client_reference_id == user]
    assert len(at_stripe) == 2  # one pack session, one subscription session
    other = api.create_topup(user, "medium", **{"Idempotency-Key": "retry-1"})
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"


def test_a_stripe_429_answers_503_and_stores_nothing(api, sessions) -> None:
    """Case 10: stripe-python 16 does not retry a 429 (no Stripe-Should-Retry); the
    receiver answers 503 stripe_rate_limited, stores nothing, and the retry succeeds."""
    before = count_topups(sessions)
    r = requests.post(f"{api.stripe.base}/_control/rate_limit", json={"count": 1}, timeout=10)
    assert r.status_code == 200
    user = uid("rl")
    throttled = api.create_topup(user, "small", **{"Idempotency-Key": "rl-1"})
    assert throttled.status_code == 503 and throttled.json()["error"]["code"] == "stripe_rate_limited"
    assert count_topups(sessions) == before
    again = api.create_topup(user, "small", **{"Idempotency-Key": "rl-1"})
    assert again.status_code == 201, again.text
    assert count_topups(sessions) == before + 1
