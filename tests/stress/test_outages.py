"""Outages.

- The broker is stopped in the middle of a storm of jobs and Stripe events: the
  receiver keeps accepting (202/200, stored), nothing sent meanwhile moves, and once the
  broker is back everything is processed exactly once (the storm's full money check).
- The database goes away under the receiver: Stripe and the app get 503 (so Stripe
  retries for days), nothing is half-written, and once the database is back the retried
  event is applied exactly once and jobs run again.
"""
from __future__ import annotations

from contextlib import ExitStack

import pytest
from sqlalchemy import func, select

from emulators.stripe import events as stripe_events
from gpubill.launcher import Stack
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.invariants import check
from ledger.models import EventStatus, Job, JobStatus, StripeEvent
from pricing import load_packs
from tests.conftest import BACKEND, claim_redis_db
from tests.helpers import Api, wait_for
from tests.proxy import TcpProxy
from tests.stacks import broker_down
from tests.stress.storm import Storm, storm_stack

pytestmark = [pytest.mark.integration]

FULL = BACKEND == "postgres"
STORM_JOBS, STORM_EVENTS = (400, 200) if FULL else (200, 100)
OUTAGE_WAVES = (1, 2)  # of 4: the broker is down while these are sent


@pytest.mark.slow
def test_broker_outage_mid_storm_is_accepted_then_processed_once(new_database, backend, tmp_path) -> None:
    with storm_stack(new_database(), backend, tmp_path, own_broker=True) as stack:
        storm = Storm(stack, STORM_JOBS, STORM_EVENTS)
        outage = ExitStack()
        try:
            storm.fund()
            for i, _wave in enumerate(storm.waves(4)):
                if i + 1 == OUTAGE_WAVES[0]:  # wave 0's work is in flight when the broker stops
                    outage.enter_context(broker_down(stack))
                if i == OUTAGE_WAVES[-1]:
                    during = storm.sent[OUTAGE_WAVES[0]:OUTAGE_WAVES[-1] + 1]
                    jobs = [j for w in during for j in w.accepted]
                    events = {e for w in during for e in w.event_ids} - set(storm.sent[0].event_ids)
                    # Stored and waiting: with the broker down nothing could start them.
                    assert storm.job_statuses(jobs) == {JobStatus.REQUESTED: len(jobs)}
                    assert storm.event_statuses(list(events)) == {EventStatus.RECEIVED: len(events)}
                    outage.close()
            elapsed = storm.drain(600)
            counts = storm.verify()
        finally:
            outage.close()
            storm.close()
    print(f"\nbroker outage: {counts}; {len(jobs)} jobs and {len(events)} events accepted while "
          f"the broker was down; drained in {elapsed:.0f} s")
    assert len(jobs) > 0 and len(events) > 0


@pytest.mark.skipif(BACKEND != "postgres", reason="SQLite is a file inside the receiver's own "
                    "process: there is no database server to lose")
def test_database_outage_answers_503_writes_nothing_and_recovers(new_database, tmp_path) -> None:
    url = new_database()
    proxy = TcpProxy(("127.0.0.1", 5432))
    broker = claim_redis_db()
    stack = Stack(env={
        "GPUBILL_ENV": "test", "GPUBILL_DATA_DIR": str(tmp_path / "stack"),
        "GPUBILL_DATABASE_URL": url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/"),
        "GPUBILL_BROKER_URL": f"redis://127.0.0.1:6379/{broker.connection_pool.connection_kwargs['db']}",
        "GPUBILL_POLL_INTERVAL_S": "1", "GPUBILL_SILENT_AFTER_S": "2",
        "GPUBILL_OUTBOX_INTERVAL_S": "1", "GPUBILL_OUTBOX_AFTER_S": "3"})
    direct = make_sessionmaker(make_engine(url))
    small = load_packs()["small"]
    try:
        stack.start()
        api = Api(stack)
        api.topup("outage-user")
        wait_for(lambda: api.wallet("outage-user")["balance"] == small.credits, 30, "first top-up")

        proxy.cut()
        event = stripe_events.event("checkout.session.completed", stripe_events.paid_checkout_session(
            user_id="outage-user", pack="small", amount_total=small.price))
        answers = [api.post_event(event), api.submit("outage-user", "framing", 30, {}),
                   api.http.get(f"{api.base}/v1/wallets/outage-user", timeout=10)]
        assert [r.status_code for r in answers] == [503, 503, 503]
        assert all(r.json()["error"]["code"] == "unavailable" for r in answers)
        proxy.restore()

        with transaction(direct) as s:  # nothing of the refused requests was written
            assert s.get(StripeEvent, event["id"]) is None
            assert s.scalar(select(func.count()).select_from(Job)) == 0
        assert api.post_event(event).status_code == 200  # Stripe's retry
        assert api.post_event(event).status_code == 200  # and a duplicate of it
        wait_for(lambda: api.wallet("outage-user")["balance"] == 2 * small.credits, 30, "retried top-up")
        job = api.submit("outage-user", "framing", 30, {"emulator": {"execution_ms": 100}})
        assert job.status_code == 202
        done = api.wait_job(job.json()["job_id"], ("completed",))
        assert api.wallet("outage-user")["balance"] == 2 * small.credits - done["charge"]
        with transaction(direct) as s:
            assert check(s) == []
    finally:
        stack.stop()
        proxy.cut()
        broker.flushdb()
        direct.kw["bind"].dispose()
