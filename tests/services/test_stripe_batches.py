"""One ``stripe.process_event`` message carrying several events (what the receiver's batch
publisher sends under load), on the running stack: each event is applied once, in order,
and one that must wait (a refund before its payment) is retried on its own without
holding back or re-applying the others."""
from __future__ import annotations

import json

import pytest

from base import queues
from ledger.inbox import intake_engine, store_stripe_event
from ledger.models import EventStatus
from pricing import load_packs
from tests.helpers import db_event, wait_for
from tests.stripe_flows import event_ids, open_session, post_all, settle, transactions, uid

pytestmark = pytest.mark.integration


def _store(db_url: str, events: list[dict]) -> list[str]:
    """Store events as the receiver does, without publishing them."""
    engine = intake_engine(db_url)
    try:
        with engine.connect() as conn:
            for ev in events:
                assert store_stripe_event(conn, event_id=ev["id"], type=ev["type"], livemode=ev["livemode"],
                                          api_version=ev.get("api_version"), payload=json.dumps(ev)) is None
    finally:
        engine.dispose()
    return [ev["id"] for ev in events]


def test_a_batch_applies_each_event_once_and_retries_a_waiting_one_alone(
        api, stack, sessions, db_url, invariants) -> None:
    credits = load_packs()["small"].credits
    first, second, late = uid("batch-a"), uid("batch-b"), uid("batch-late")
    sessions_of = {u: open_session(api, u, "small") for u in (first, second, late)}
    paid = {u: api.stripe.pay(s, deliver=False) for u, s in sessions_of.items()}
    early_refund = api.stripe.refund(sessions_of[late], 100, deliver=False)  # before its payment

    # first's payment, late's refund, second's payment, first's payment again: one message
    batch = _store(db_url, paid[first]["events"] + early_refund["events"] + paid[second]["events"])
    producer = queues.producer(stack.settings.broker_url)
    try:
        assert queues.enqueue(producer, queues.PROCESS_STRIPE_EVENT, *batch, *event_ids(paid[first]))
    finally:
        producer.close()

    wait_for(lambda: api.wallet(first)["balance"] == credits and api.wallet(second)["balance"] == credits,
             30, "both payments in the batch credited")
    refund_ids = event_ids(early_refund)
    wait_for(lambda: all(db_event(sessions, i).attempts >= 1 for i in refund_ids), 30, "the refund tried")
    assert api.wallet(late)["balance"] == 0  # nothing to claw back from yet

    post_all(api, paid[late]["events"])
    found = settle(sessions, batch + event_ids(paid[late]))
    assert set(found.values()) <= {EventStatus.PROCESSED, EventStatus.IGNORED}, found
    assert api.wallet(late)["balance"] == credits - 100
    # applied once each: one top-up per wallet, one claw-back
    for user in (first, second):
        assert [t[0] for t in transactions(sessions, user)] == ["topup"]
    assert sorted(t[0] for t in transactions(sessions, late)) == ["clawback", "topup"]
    invariants()
