"""A shuffled storm: 500 signed Stripe events (every flow, duplicates included) for 42
wallets — packs paid by card and by delayed methods, refunds (partial, full, failed),
disputes (lost, won, lost then won on appeal), subscriptions bought through Checkout by
new customers, renewals, pro-rata upgrades and refunds of invoice charges — posted
concurrently in random order to a stack of its own. The final balances must equal a
straight-line model that applies the same events once, in Stripe's order, with the
independent rate formulas of ``tests.model`` (packs, plans, claw-back shares); no
event may be lost or parked (nothing replayed by hand), every ledger invariant holds and
``gpubill reconcile``'s checks are clean."""
from __future__ import annotations

import random
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from base import queues
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.invariants import check
from ledger.models import EventStatus
from ledger.reconcile import run_checks
from tests.helpers import Api, wait_for
from tests.model import rates
from tests.stress.storm import storm_stack
from tests.stripe_flows import open_session, settle, statuses, uid

pytestmark = pytest.mark.integration
WALLETS, EVENTS, KINDS = 42, 500, 7
PRO = "price_gpubill_pro_monthly"
PACKS, PLANS = rates.packs(), rates.plans()


@pytest.fixture
def own_stack(new_database, backend, tmp_path):
    """A stack on a database of its own, so reconcile judges this storm alone."""
    with storm_stack(new_database(), backend, tmp_path) as stack:
        yield stack



def script(api: Api, kind: int, lost: bool) -> tuple[str, dict[str, str], list[dict[str, Any]]]:
    """One wallet's story on the stand-in (nothing delivered): (user, session → pack, events)."""
    user, sd = uid("storm"), api.stripe
    packs: dict[str, str] = {}

    def session(pack: str) -> str:
        sid = open_session(api, user, pack)
        packs[sid] = pack
        return sid

    events: list[dict[str, Any]] = []

    def add(result: dict[str, Any]) -> dict[str, Any]:
        events.extend(result["events"])
        return result

    if kind == 0:    # card, two partial refunds
        sid = session("medium")
        add(sd.pay(sid, deliver=False))
        add(sd.refund(sid, 333, deliver=False))
        add(sd.refund(sid, 500, deliver=False, list_refunds=True))
    elif kind == 1:  # card, dispute lost or won
        sid = session("large")
        add(sd.pay(sid, deliver=False))
        dp = add(sd.dispute(sid, deliver=False))["object"]["id"]
        add(sd.close_dispute(dp, "lost" if lost else "won", deliver=False))
    elif kind == 2:  # delayed payment, full refund that then fails
        sid = session("small")
        add(sd.pay(sid, method="delayed", outcome="succeeded", deliver=False))
        refund = add(sd.refund(sid, deliver=False))
        rid = next(e["data"]["object"]["id"] for e in refund["events"] if e["type"] == "refund.created")
        add(sd.fail_refund(rid, deliver=False))
    elif kind == 3:  # a failed delayed payment, an expired session, then a card payment
        add(sd.pay(session("small"), method="delayed", outcome="failed", deliver=False))
        add(sd.expire(session("small"), deliver=False))
        add(sd.pay(session("medium"), deliver=False))
    elif kind == 4:  # card, then a subscription invoice
        sid = session("small")
        paid = add(sd.pay(sid, deliver=False))
        customer = next(e["data"]["object"]["customer"] for e in paid["events"]
                        if e["type"] == "checkout.session.completed")
        add(sd.pay_invoice(customer, PRO, deliver=False))
    elif kind == 5:  # new customer subscribes (starter), upgrades to pro mid-period, part refunded
        sub = add(sd.pay(subscribe(api, user, "starter"), deliver=False))
        upgraded = add(sd.subscription(subscription_of(sub), "change", price=PLANS["pro"]["price"],
                                       remaining=0.5, deliver=False))
        add(sd.refund(invoice_of(upgraded), 700, deliver=False))
    else:            # new customer subscribes (pro), renews; the renewal is disputed, lost, won on appeal
        sub = add(sd.pay(subscribe(api, user, "pro"), deliver=False))
        renewal = invoice_of(add(sd.subscription(subscription_of(sub), "renew", deliver=False)))
        dp = add(sd.dispute(renewal, deliver=False))["object"]["id"]
        add(sd.close_dispute(dp, "lost", deliver=False))
        add(sd.close_dispute(dp, "appeal", deliver=False))
    return user, packs, events


def subscribe(api: Api, user: str, plan: str) -> str:
    """``POST /v1/subscriptions``: the Checkout Session id."""
    r = api.http.post(f"{api.base}/v1/subscriptions", json={"user_id": user, "plan": plan}, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["session_id"]


def subscription_of(result: dict[str, Any]) -> str:
    return next(e["data"]["object"]["id"] for e in result["events"] if e["type"] == "customer.subscription.created")


def invoice_of(result: dict[str, Any]) -> str:
    return next(e["data"]["object"]["id"] for e in result["events"] if e["type"] == "invoice.paid")


def _line(line: dict[str, Any]) -> tuple[str, int, int, bool]:
    details = (line.get("parent") or {}).get("subscription_item_details") or {}
    return (line["pricing"]["price_details"]["price"], line["amount"], line["quantity"],
            bool(details.get("proration")))


def straight_line(stories: list[tuple[str, dict[str, str], list[dict[str, Any]]]]) -> dict[str, int]:
    """Expected balances: each event applied once, in the order Stripe emitted it, priced
    by ``tests.model`` (packs, plan grants, claw-back shares)."""
    balance: dict[str, int] = defaultdict(int)
    for user, sessions, events in stories:
        status = {sid: "open" for sid in sessions}
        paid_for: dict[str, tuple[int, int]] = {}  # session or invoice → (credits, cents)
        target: dict[str, str] = {}                # payment_intent → session or invoice
        taken: dict[str, dict[str, int]] = defaultdict(dict)  # session/invoice → reversal id → cents
        for ev in events:
            t, o = ev["type"], ev["data"]["object"]
            if t.startswith("checkout.session.") and o.get("mode") == "payment":
                sid = o["id"]
                if o.get("payment_intent"):
                    target[o["payment_intent"]] = sid
                paid = t == "checkout.session.async_payment_succeeded" or (
                    t == "checkout.session.completed" and o["payment_status"] == "paid")
                if paid and status[sid] == "open":
                    status[sid] = "credited"
                    pack = PACKS[sessions[sid]]
                    paid_for[sid] = (int(pack["credits"]), int(pack["price"]))
                    balance[user] += int(pack["credits"])
                elif t in ("checkout.session.async_payment_failed", "checkout.session.expired"):
                    status[sid] = "closed"
            elif t == "invoice.paid" and o["id"] not in paid_for:
                grant = rates.invoice_grant([_line(ln) for ln in o["lines"]["data"]], o["amount_paid"])
                paid_for[o["id"]] = (grant, o["amount_paid"])
                balance[user] += grant
            elif t == "invoice_payment.paid":
                target[o["payment"]["payment_intent"]] = o["invoice"]
            elif t in ("refund.created", "refund.failed") or t.startswith("charge.dispute."):
                stolen = taken[target[o["payment_intent"]]]
                if t == "refund.created":
                    stolen[o["id"]] = o["amount"]
                elif t in ("refund.failed", "charge.dispute.funds_reinstated"):
                    stolen.pop(o["id"], None)
                elif t in ("charge.dispute.created", "charge.dispute.funds_withdrawn"):
                    stolen[o["id"]] = o["amount"]
        for paid_thing, stolen in taken.items():
            credits, cents = paid_for[paid_thing]
            balance[user] -= rates.share(credits, cents, sum(stolen.values()))
    return dict(balance)


def drained(stack) -> None:
    """Leave no duplicate deliveries queued behind for the tests that follow."""
    broker = redis.Redis.from_url(stack.settings.broker_url)
    try:
        wait_for(lambda: broker.llen(queues.STRIPE) == 0, 120, "stripe queue drained")
    finally:
        broker.close()


def test_shuffled_storm_of_500_events_matches_the_straight_line_model(own_stack) -> None:
    rng = random.Random(20261121)
    api = Api(own_stack)
    sessions = make_sessionmaker(make_engine(own_stack.settings.sqlalchemy_url))
    stories = [script(api, i % KINDS, lost=bool(i % 2)) for i in range(WALLETS)]
    unique = [ev for _, _, events in stories for ev in events]
    assert len(unique) < EVENTS
    storm = unique + rng.sample(unique, EVENTS - len(unique))  # the rest: duplicate deliveries
    rng.shuffle(storm)

    started = time.monotonic()
    # Beat is held while the storm is posted (the outbox sweep would re-publish the
    # growing backlog); once posted it runs, so events that wait past their task
    # retries are delivered again by the sweeper, as in production.
    with own_stack.paused("beat"), ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda ev: api.post_event(ev).status_code, storm))
    posted = time.monotonic()
    assert codes == [200] * EVENTS
    ids = [ev["id"] for ev in unique]
    found = settle(sessions, ids, timeout_s=180)
    settled = time.monotonic()
    drained(own_stack)
    print(f"\nstorm: {len(unique)} unique events + {EVENTS - len(unique)} duplicates; posted in "
          f"{posted - started:.1f}s, settled in {settled - started:.1f}s")

    # Nothing parked, nothing replayed by hand: every event applied (or of no money) once.
    assert set(found.values()) <= {EventStatus.PROCESSED, EventStatus.IGNORED}, \
        {i: s for i, s in statuses(sessions, ids).items() if s == EventStatus.FAILED}
    expected = straight_line(stories)
    actual = {user: api.wallet(user)["balance"] for user, _, _ in stories}
    assert actual == {user: expected.get(user, 0) for user, _, _ in stories}
    assert any(v < 0 for v in actual.values()) is False  # no story here ends in debt
    with transaction(sessions) as s:
        assert check(s) == []
        report = run_checks(s)
    assert [(r.name, r.violations) for r in report.results if r.violations] == []
