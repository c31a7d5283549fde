"""``gpubill reconcile``: clean on a correct ledger, finds each kind of injected violation
(ledger invariants and Stripe-side), records its runs; the nightly task runs in the real
worker, once per run key, under its DB lease.

Corruption goes into a database of the test's own (``own_database``), never the shared one.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from base import queues
from ledger import locks, operations as ops, topups
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.invariants import CHECKS
from ledger.jobs import new_job
from ledger.models import (
    Hold,
    Job,
    JobStatus,
    LedgerTransaction,
    Posting,
    ReconcileRun,
    RunPodJob,
    StripeEvent,
    TaskLock,
    utcnow,
)
from ledger.reconcile import all_checks, check_name, run_checks, snapshot
from ledger.reconcile_runs import nightly
from pricing import JobParams, load_packs, quote
from tests.factories import CheckoutSessionFactory, EventFactory
from tests.gpubill.operator_support import gpubill, own_database, summary_rows
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

INVARIANT_ROWS = tuple(check_name(c) for c in CHECKS)
STRIPE_ROWS = ("paid sessions credited (stripe)", "top-up credits match (stripe)",
               "refunds clawed back once (stripe)", "top-up claw-backs = refunded share (stripe)",
               "events parked or in the wrong mode (stripe)")
EVENTS_ROW = "events parked or in the wrong mode (stripe)"
GPU_ROW = "GPU time conserved (runpod)"
POISON_ROW = "poison jobs (runpod)"
N_CHECKS = len(all_checks())


def paid_event(s: Session, user: str) -> str:
    """A processed checkout.session.completed (paid) event; returns its session id."""
    ev = EventFactory(obj=CheckoutSessionFactory(user=user, pack="small"))
    s.add(StripeEvent(id=ev["id"], type=ev["type"], livemode=False, api_version=None,
                      payload=json.dumps(ev), status="processed", attempts=1,
                      received_at=utcnow(), processed_at=utcnow()))
    return ev["data"]["object"]["id"]


def scenario(s: Session) -> dict[str, object]:
    """A paid, credited top-up with a quarter refunded, a charged job and an open hold."""
    user = f"rec-{secrets.token_hex(4)}"
    pack = load_packs()["small"]
    sid = paid_event(s, user)
    topup = topups.open_topup(s, session_id=sid, user_id=user, pack=pack)
    topups.link(s, topup, charge=f"ch_{user}")
    topups.credit(s, topup, amount_total=pack.price, currency=pack.currency, event_id="evt_x")
    topups.apply_refund(s, topup, refund_id=f"re_{user}", amount=pack.price // 4,
                        status="succeeded", charge=f"ch_{user}")
    q = quote("framing", JobParams(duration_s=30, resolution="1080p"))
    job = new_job(job_id=f"job_{secrets.token_hex(8)}", user_id=user, job_type="framing",
                  params={}, job_input={}, quote=q, webhook_token=secrets.token_hex(16))
    s.add(job)
    s.flush()
    hold = ops.place_hold(s, user_id=user, amount=q.hold_credits, op_key=f"job:{job.id}:hold",
                          job_id=job.id, expires_at=utcnow() + timedelta(hours=1))
    settled = ops.capture(s, hold_id=hold.hold_id, amount=3, op_key=f"job:{job.id}:capture", ref=job.id)
    job.hold_id, job.status, job.charge, job.released = (
        hold.hold_id, JobStatus.COMPLETED, settled.captured, settled.released)
    job.execution_ms, job.finished_at = 5_000, utcnow()
    open_hold = ops.place_hold(s, user_id=user, amount=7, op_key=f"test:{user}:open",
                               expires_at=utcnow() + timedelta(hours=1))
    return {"user": user, "session": sid, "refund": f"re_{user}", "open_hold": open_hold.hold_id,
            "job": job.id}


@pytest.fixture
def ledger_db(tmp_path) -> Iterator[tuple[str, sessionmaker[Session], dict[str, object]]]:
    with own_database(tmp_path) as url:
        engine = make_engine(url)
        factory = make_sessionmaker(engine)
        with transaction(factory) as s:
            ids = scenario(s)
        yield url, factory, ids
        engine.dispose()


def corrupted(ledger_db, corrupt: Callable[[Session, dict], None]):
    url, factory, ids = ledger_db
    with transaction(factory) as s:
        corrupt(s, ids)
    result = gpubill(url, "reconcile")
    return result, summary_rows(result.output)


def test_clean_ledger_passes_with_a_row_per_check(ledger_db) -> None:
    url, factory, _ = ledger_db
    result = gpubill(url, "reconcile")
    assert result.exit_code == 0, result.output
    rows = summary_rows(result.output)
    assert set(rows) == {*INVARIANT_ROWS, *STRIPE_ROWS, GPU_ROW, POISON_ROW}
    assert all(v == 0 for _, v in rows.values())
    # top-up + claw-back + capture; one wallet; two holds; one job; one event; one refund.
    assert rows["transactions balance (1)"] == (3, 0)
    assert rows["wallet caches (2)"] == (1, 0)
    assert rows["holds end once (4)"] == (2, 0)
    assert rows["paid sessions credited (stripe)"] == (1, 0)
    assert rows["refunds clawed back once (stripe)"] == (1, 0)
    assert result.output.strip().endswith("0 violation(s)")


def test_gpu_time_not_accounted_for(ledger_db) -> None:
    """Issue 11 conservation: a stray RunPod job never cancelled nor written off, and a
    recorded RunPod job without its billed row, are both reported."""
    def corrupt(s, ids):
        s.add(RunPodJob(id="rp-stray", job_id=ids["job"], endpoint_id="gpubill-framing",
                        role="stray", state="open", recorded_at=utcnow() - timedelta(hours=1)))
        s.execute(update(Job).where(Job.id == ids["job"]).values(runpod_job_id="rp-billed"))

    result, rows = corrupted(ledger_db, corrupt)
    assert result.exit_code == 1
    assert rows[GPU_ROW][1] == 2
    assert "stray RunPod job rp-stray not cancelled" in result.output
    assert "RunPod job rp-billed recorded, billed rows []" in result.output


def test_a_posting_deleted_by_hand(ledger_db) -> None:
    def corrupt(s, ids):
        tx = s.scalar(select(LedgerTransaction.id).where(LedgerTransaction.kind == "capture"))
        leg = s.scalar(select(func.min(Posting.id)).where(Posting.transaction_id == tx))
        s.execute(delete(Posting).where(Posting.id == leg))

    result, rows = corrupted(ledger_db, corrupt)
    assert result.exit_code == 1
    assert rows["transactions balance (1)"][1] == 1
    assert rows["wallet caches (2)"][1] == 1  # the wallet's balance no longer matches its postings
    assert "[1] transaction" in result.output


def test_a_hold_amount_edited(ledger_db) -> None:
    result, rows = corrupted(ledger_db, lambda s, ids: s.execute(
        update(Hold).where(Hold.id == ids["open_hold"]).values(amount=Hold.amount + 1)))
    assert result.exit_code == 1
    assert rows["wallet caches (2)"][1] == 1
    assert "held 7 != open holds 8" in result.output


def test_a_duplicate_credit(ledger_db) -> None:
    def corrupt(s, ids):  # the same session credited a second time under another key
        ops.transfer(s, user_id=ids["user"], amount=500, counter="stripe:clearing",
                     kind=ops.TxKind.TOPUP, op_key=f"dup:{ids['session']}", ref=ids["session"])

    result, rows = corrupted(ledger_db, corrupt)
    assert result.exit_code == 1
    assert rows["credited / charged once (5)"][1] == 1
    assert rows["paid sessions credited (stripe)"][1] == 1
    assert rows["wallet caches (2)"][1] == 0  # a well-formed ledger call: only "once" catches it


def test_a_paid_session_never_credited(ledger_db) -> None:
    """Stripe says paid, the ledger never credited it: invisible to invariants 1–6."""
    result, rows = corrupted(ledger_db, lambda s, ids: paid_event(s, ids["user"]))
    assert result.exit_code == 1
    assert rows["paid sessions credited (stripe)"][1] == 1
    assert all(rows[name][1] == 0 for name in INVARIANT_ROWS)
    assert "no top-up row, 0 top-up transactions" in result.output


def test_a_paid_subscription_checkout_is_not_a_missing_top_up(ledger_db) -> None:
    """A ``mode=subscription`` Checkout is credited by its invoices, never as a top-up
    of its own: its paid ``checkout.session.completed`` is no violation (the seeded
    simulation, seed 1, found reconcile flagging every subscription)."""
    def corrupt(s, ids):  # type: ignore[no-untyped-def]
        sid = paid_event(s, ids["user"])
        event = s.scalars(select(StripeEvent).where(StripeEvent.payload.contains(sid))).one()
        body = json.loads(event.payload)
        body["data"]["object"]["mode"] = "subscription"
        event.payload = json.dumps(body)

    result, rows = corrupted(ledger_db, corrupt)
    assert result.exit_code == 0, result.output
    assert rows["paid sessions credited (stripe)"][1] == 0


def test_a_refund_clawed_back_twice(ledger_db) -> None:
    def corrupt(s, ids):
        ops.transfer(s, user_id=ids["user"], amount=-125, counter="stripe:clearing",
                     kind=ops.TxKind.CLAWBACK, op_key=f"again:{ids['refund']}", ref=ids["refund"],
                     allow_debt=True)

    result, rows = corrupted(ledger_db, corrupt)
    assert result.exit_code == 1
    assert rows["refunds clawed back once (stripe)"][1] == 1
    assert rows["wallet caches (2)"][1] == 0  # a well-formed ledger call: only "once" catches it


def test_parked_money_events_and_wrong_mode_events_are_violations(ledger_db) -> None:
    """Issue 12 cases 4 and 6: a parked (failed) event that moves money, and an event
    stored ``wrong_mode``, exit 1 and are named; a parked event that moves no money
    (``charge.succeeded`` only links ids) is not a violation."""
    def corrupt(s, ids):
        for eid, etype, status in (("evt_parked_refund", "charge.refunded", "failed"),
                                   ("evt_live", "checkout.session.completed", "wrong_mode"),
                                   ("evt_parked_link", "charge.succeeded", "failed")):
            s.add(StripeEvent(id=eid, type=etype, livemode=False, api_version=None, payload="{}",
                              status=status, attempts=8, last_error="gave up after 8 attempts: x",
                              received_at=utcnow()))

    result, rows = corrupted(ledger_db, corrupt)
    assert result.exit_code == 1
    assert rows[EVENTS_ROW][1] == 2
    assert "stripe event evt_parked_refund" in result.output
    assert "stripe event evt_live" in result.output and "wrong mode" in result.output
    assert "evt_parked_link" not in result.output


def test_chunked_run_finds_what_a_single_pass_finds(ledger_db) -> None:
    url, factory, ids = ledger_db
    with transaction(factory) as s:
        for _ in range(3):
            scenario(s)
        s.execute(update(Hold).where(Hold.id == ids["open_hold"]).values(amount=99))
        s.execute(update(Job).where(Job.id == ids["job"]).values(charge=4))
    seen: list[int] = []
    with snapshot(factory) as s:
        one = run_checks(s, chunk=10_000)
        tiny = run_checks(s, progress=seen.append, chunk=2)
    assert [str(v) for v in tiny.violations] == [str(v) for v in one.violations]
    assert len(one.violations) == 2
    assert [r.examined for r in tiny.results] == [r.examined for r in one.results]
    assert max(seen) <= 2 and sum(seen) == sum(r.examined or 1 for r in one.results)


def test_progress_bar_and_recorded_runs(ledger_db) -> None:
    url, factory, _ = ledger_db
    result = gpubill(url, "reconcile", "--progress")
    assert result.exit_code == 0 and "reconciling" in result.stderr
    with transaction(factory) as s:
        run = s.scalars(select(ReconcileRun).order_by(ReconcileRun.id.desc())).first()
    assert run.trigger == "cli" and run.status == "clean" and run.violations == 0
    assert run.finished_at is not None and len(run.summary["checks"]) == N_CHECKS


def test_bad_option_is_a_usage_error(ledger_db) -> None:
    result = gpubill(ledger_db[0], "reconcile", "--show", "-1")
    assert result.exit_code == 2 and "Invalid value" in result.output


def test_nightly_task_runs_in_the_worker_once_per_key(stack, sessions) -> None:
    """Published by name to the running worker (as beat's crontab entry does), not
    waited for at 03:17: the same task, the same queue, the real process."""
    key = f"test:{secrets.token_hex(4)}"
    producer = queues.producer(stack.settings.broker_url)
    assert queues.enqueue(producer, queues.RECONCILE, key)

    def finished() -> ReconcileRun | None:
        with transaction(sessions) as s:
            run = s.scalars(select(ReconcileRun).where(ReconcileRun.run_key == key)).one_or_none()
            leased = s.get(TaskLock, "reconcile") is not None
            return run if run is not None and run.finished_at is not None and not leased else None

    run = wait_for(finished, 60, "the nightly reconcile run to be recorded and its lease freed")
    assert run.trigger == "beat" and run.status in ("clean", "violations")
    assert run.violations == run.summary["violations"] and len(run.summary["checks"]) == N_CHECKS
    # Idempotent: the same key again does nothing.
    assert nightly(sessions, key, 60) == "done"
    with transaction(sessions) as s:
        assert s.scalar(select(func.count()).where(ReconcileRun.run_key == key)) == 1


def test_nightly_run_is_self_locking(sessions) -> None:
    key = f"test:{secrets.token_hex(4)}"
    assert locks.acquire(sessions, "reconcile", "another-worker", 60)
    try:
        assert not locks.acquire(sessions, "reconcile", "me", 60)
        assert nightly(sessions, key, 60) == "locked"
    finally:
        locks.release(sessions, "reconcile", "another-worker")
    with transaction(sessions) as s:
        assert s.scalar(select(func.count()).where(ReconcileRun.run_key == key)) == 0
    # An expired lease is taken over.
    assert locks.acquire(sessions, "reconcile", "crashed", -1)
    assert nightly(sessions, key, 60) in ("clean", "violations")


def test_beat_schedules_the_nightly_run_at_the_configured_utc_time(backend) -> None:
    """The worker's own app (built in a child process, as beat builds it) carries the
    crontab entry for ``maintenance.reconcile`` on the maintenance queue."""
    probe = ("from worker.app import app; e = app.conf.beat_schedule['reconcile-nightly']; "
             "print(e['task'], sorted(e['schedule'].hour), sorted(e['schedule'].minute), "
             "app.conf.task_routes[e['task']]['queue'])")
    env = {**os.environ, "GPUBILL_BROKER_URL": backend.broker_url or "redis://127.0.0.1:1/0",
           "GPUBILL_RECONCILE_HOUR": "4", "GPUBILL_RECONCILE_MINUTE": "5"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip().splitlines()[-1]
    assert out == f"{queues.RECONCILE} [4] [5] {queues.MAINTENANCE}"
