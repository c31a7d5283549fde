"""Money going back, end to end through the Stripe stand-in's signed webhooks and the
worker: refunds (partial, full, failed, before the credit), disputes (lost, won, out of
order), subscription invoices. Every step applies once; balances and invariants checked."""
from __future__ import annotations

from datetime import timedelta

import pytest

from gateways.stripe import StripeGateway
from ledger import operations as ops
from ledger.db import transaction
from ledger.models import EventStatus, Hold, HoldStatus, ReversalStatus, utcnow
from tests.factories import HoldFactory
from tests.helpers import Api, db_event, scrape, value
from tests.stripe_flows import (
    bought,
    event_ids,
    open_session,
    post_all,
    reversal,
    settle,
    transactions,
    uid,
)

pytestmark = pytest.mark.integration
PRO, STARTER = "price_gpubill_pro_monthly", "price_gpubill_starter_monthly"



def refund_id(result: dict) -> str:
    return next(e["data"]["object"]["id"] for e in result["events"] if e["type"] == "refund.created")


def refund_evt(result: dict) -> str:
    return next(e["id"] for e in result["events"] if e["type"] == "refund.created")


def test_two_partial_refunds_then_a_full_one_claw_back_exactly(api, sessions, invariants) -> None:
    """2,200 credits for 2,000 cents: 333 + 333 + the 1,334 left claw back 367 + 366 +
    1,467 = exactly 2,200 (ceil of the cumulative share, each step the difference).
    ``charge.refunded`` omits its refund list (as current API versions do), so the worker
    re-fetches it from the stand-in through the SDK."""
    user, session_id = bought(api, "medium")
    steps = [(333, 2200 - 367), (333, 2200 - 733), (None, 0)]
    for amount, balance in steps:
        result = api.stripe.refund(session_id, amount, duplicate=True, order="shuffled")
        assert set(result["deliveries"]) == {200}
        settle(sessions, event_ids(result))
        assert api.wallet(user)["balance"] == balance
        assert reversal(sessions, refund_id(result)).status == ReversalStatus.ACTIVE
    claws = [(kind, amount) for kind, _, amount, _ in transactions(sessions, user)[1:]]
    assert claws == [("clawback", -367), ("clawback", -366), ("clawback", -1467)]
    assert all(op.startswith("refund:re_") for _, op, _, _ in transactions(sessions, user)[1:])
    invariants()


def test_failed_refund_restores_its_credits_once(api, sessions, invariants) -> None:
    user, session_id = bought(api, "small")
    refunded = api.stripe.refund(session_id, 200)
    settle(sessions, event_ids(refunded))
    assert api.wallet(user)["balance"] == 300
    rid = refund_id(refunded)
    failed = api.stripe.fail_refund(rid, duplicate=True)  # refund.updated + refund.failed, twice
    settle(sessions, event_ids(failed))
    assert api.wallet(user)["balance"] == 500
    assert [t[:3] for t in transactions(sessions, user)[1:]] == [
        ("clawback", f"refund:{rid}", -200), ("restore", f"refund:{rid}:restore", 200)]
    assert reversal(sessions, rid).status == ReversalStatus.FAILED
    # A late, older snapshot of the refund (refund.created again) changes nothing.
    post_all(api, [e for e in refunded["events"] if e["type"] == "refund.created"])
    assert api.wallet(user)["balance"] == 500
    invariants()


def test_refund_before_the_credit_waits_then_applies(api, sessions, invariants) -> None:
    user = uid("early")
    session_id = open_session(api, user, "small")
    paid = api.stripe.pay(session_id, deliver=False)
    refunded = api.stripe.refund(session_id, 100, deliver=False)
    early = post_all(api, refunded["events"] * 2)  # the refund first, twice
    post_all(api, paid["events"])
    found = settle(sessions, early + event_ids(paid))
    assert set(found.values()) <= {EventStatus.PROCESSED, EventStatus.IGNORED}
    assert api.wallet(user)["balance"] == 400
    assert db_event(sessions, refund_evt(refunded)).attempts >= 1
    invariants()


def test_claw_back_may_cause_debt_but_never_breaks_an_open_hold(api, sessions, invariants) -> None:
    user, session_id = bought(api, "small")
    hold = HoldFactory.create(sessions=sessions, user_id=user, amount=120, expires_at=utcnow() + timedelta(minutes=5))
    result = api.stripe.refund(session_id)  # all 500 back
    settle(sessions, event_ids(result))
    w = api.wallet(user)
    assert (w["balance"], w["held"], w["available"]) == (0, 120, -120)
    with transaction(sessions) as s:
        assert s.get(Hold, hold.id).status == HoldStatus.OPEN
        ops.capture(s, hold_id=hold.id, amount=50, op_key=f"test:{user}:capture")
    assert api.wallet(user)["balance"] == -50  # in debt
    assert api.submit(user, "framing").status_code == 402  # no new holds until topped up
    invariants()


def test_dispute_lost_stays_clawed_back(api, sessions, invariants) -> None:
    user, session_id = bought(api, "medium")
    opened = api.stripe.dispute(session_id, duplicate=True)  # created + funds_withdrawn, twice
    settle(sessions, event_ids(opened))
    assert api.wallet(user)["balance"] == 0
    dp = opened["object"]["id"]
    lost = api.stripe.close_dispute(dp, "lost", duplicate=True)
    settle(sessions, event_ids(lost))
    assert api.wallet(user)["balance"] == 0
    assert [t[:3] for t in transactions(sessions, user)[1:]] == [
        ("clawback", f"dispute:{dp}:withdrawn", -2200)]
    assert reversal(sessions, dp).status == ReversalStatus.LOST
    invariants()


def test_dispute_won_restores(api, sessions, invariants) -> None:
    user, session_id = bought(api, "medium")
    opened = api.stripe.dispute(session_id, 1000)  # half the charge
    settle(sessions, event_ids(opened))
    assert api.wallet(user)["balance"] == 1100
    dp = opened["object"]["id"]
    won = api.stripe.close_dispute(dp, "won", duplicate=True)  # funds_reinstated + closed(won)
    settle(sessions, event_ids(won))
    assert api.wallet(user)["balance"] == 2200
    assert [t[:3] for t in transactions(sessions, user)[1:]] == [
        ("clawback", f"dispute:{dp}:withdrawn", -1100), ("restore", f"dispute:{dp}:reinstated", 1100)]
    invariants()


def test_dispute_events_in_reverse_order_net_to_nothing(api, sessions, invariants) -> None:
    user, session_id = bought(api, "small")
    opened = api.stripe.dispute(session_id, deliver=False)
    won = api.stripe.close_dispute(opened["object"]["id"], "won", deliver=False)
    ids = post_all(api, list(reversed(opened["events"] + won["events"])))
    settle(sessions, ids)
    assert api.wallet(user)["balance"] == 500
    assert reversal(sessions, opened["object"]["id"]).status == ReversalStatus.WON
    assert [t[0] for t in transactions(sessions, user)] == ["topup"]
    invariants()


def customer_of(api: Api, session_id: str) -> str:
    return StripeGateway(api.cfg).client.v1.checkout.sessions.retrieve(session_id).customer


def test_invoice_paid_grants_plan_credits_once_per_invoice(api, sessions, invariants) -> None:
    user, session_id = bought(api, "small")
    customer = customer_of(api, session_id)
    first = api.stripe.pay_invoice(customer, PRO, duplicate=True, order="shuffled")
    second = api.stripe.pay_invoice(customer, STARTER, quantity=2)
    settle(sessions, event_ids(first) + event_ids(second))
    assert api.wallet(user)["balance"] == 500 + 5000 + 2 * 1000
    grants = [(op, amount) for kind, op, amount, _ in transactions(sessions, user) if kind == "grant"]
    assert grants == [(f"invoice:{first['object']['id']}", 5000), (f"invoice:{second['object']['id']}", 2000)]
    invariants()


def parked_gauge(api: Api) -> float:
    return value(scrape(api.stack.receiver_url), "gpubill_stripe_events_not_applied", reason="parked")


def test_invoice_with_an_unknown_price_is_parked_with_a_reason(api, sessions, invariants) -> None:
    """Parked with its reason, and not silently (issue 12 case 4): a parked money event
    counts in the /metrics gauge (reconcile names it: test_reconcile.py)."""
    user, session_id = bought(api, "small")
    before = parked_gauge(api)
    result = api.stripe.pay_invoice(customer_of(api, session_id), "price_somebody_else")
    paid_evt = next(e["id"] for e in result["events"] if e["type"] == "invoice.paid")
    assert settle(sessions, [paid_evt])[paid_evt] == EventStatus.FAILED
    assert "no line names a known plan price" in db_event(sessions, paid_evt).last_error
    assert api.wallet(user)["balance"] == 500
    assert parked_gauge(api) == before + 1
    invariants()


OLD_API = "2024-09-30.acacia"  # before 2024-10-28: card refunds send no refund.* events


def test_old_endpoint_card_refund_failure_restores_via_charge_refund_updated(
        api, sessions, invariants) -> None:
    """Issue 12 case 8: a webhook endpoint on an API version before 2024-10-28 gets a card
    refund as ``charge.refunded`` only (its refunds re-fetched) and the refund's failure
    as ``charge.refund.updated`` only; the failure restores the credits, once, keyed on
    the refund id. 500 credits for 500 cents: 200 cents refunded = 200 credits."""
    user, session_id = bought(api, "small")
    refunded = api.stripe.refund(session_id, 200, api_version=OLD_API)
    assert [e["type"] for e in refunded["events"]] == ["charge.refunded"]
    settle(sessions, event_ids(refunded))
    assert api.wallet(user)["balance"] == 300
    [rid] = [r["id"] for r in StripeGateway(api.cfg).refunds_of_charge(refunded["object"]["id"])]
    failed = api.stripe.fail_refund(rid, api_version=OLD_API, duplicate=True)
    assert {e["type"] for e in failed["events"]} == {"charge.refund.updated"}
    settle(sessions, event_ids(failed))
    assert api.wallet(user)["balance"] == 500
    assert [t[:3] for t in transactions(sessions, user)[1:]] == [
        ("clawback", f"refund:{rid}", -200), ("restore", f"refund:{rid}:restore", 200)]
    invariants()


def test_dispute_lost_then_won_on_appeal_is_reinstated(api, sessions, invariants) -> None:
    """Issue 12 case 7: ``lost`` is not final. 2,200 credits for 2,000 cents, 1,000 cents
    disputed: 1,100 clawed back, kept when lost; the appeal (appeal_needs_response,
    appeal_under_review, then funds_reinstated and closed won) restores the 1,100 once."""
    user, session_id = bought(api, "medium")
    opened = api.stripe.dispute(session_id, 1000)
    settle(sessions, event_ids(opened))
    dp = opened["object"]["id"]
    lost = api.stripe.close_dispute(dp, "lost")
    settle(sessions, event_ids(lost))
    assert api.wallet(user)["balance"] == 1100
    appeal = api.stripe.close_dispute(dp, "appeal", duplicate=True)
    assert [e["data"]["object"]["status"] for e in appeal["events"]] == [
        "appeal_needs_response", "appeal_under_review", "won", "won"]
    settle(sessions, event_ids(appeal))
    assert api.wallet(user)["balance"] == 2200
    assert [t[:3] for t in transactions(sessions, user)[1:]] == [
        ("clawback", f"dispute:{dp}:withdrawn", -1100), ("restore", f"dispute:{dp}:reinstated", 1100)]
    assert reversal(sessions, dp).status == ReversalStatus.REINSTATED
    invariants()


@pytest.mark.parametrize("first", ["created", "closed"])
def test_prevented_dispute_claws_nothing_back(api, sessions, invariants, first) -> None:
    """Issue 12 case 7: a dispute ``prevented`` (API 2025-08-27.basil) never became a
    chargeback and withdrew no funds. Its two events (created and closed with that
    status, each delivered twice) are applied one after the other, in either order:
    the 500 credits stay untouched at every step."""
    user, session_id = bought(api, "small")
    prevented = api.stripe.dispute(session_id, prevented=True, deliver=False)
    events = {e["type"].rsplit(".", 1)[1]: e for e in prevented["events"]}
    assert set(events) == {"created", "closed"}
    for step in (first, ({"created", "closed"} - {first}).pop()):
        settle(sessions, post_all(api, [events[step]] * 2))
        assert api.wallet(user)["balance"] == 500, step
    assert [t[0] for t in transactions(sessions, user)] == ["topup"]
    invariants()
