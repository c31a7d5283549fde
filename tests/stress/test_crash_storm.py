"""Crashes: worker processes are SIGKILLed again and again during a storm of GPU jobs
and Stripe events, and restarted. When the storm drains, every job is settled or
released exactly once, every event applied once, and the ledger equals a straight-line
model of what happened.

A killed worker's unacknowledged message comes back from Redis only after the
visibility timeout (1 h), so the storm drains through the DB safety nets: the outbox
sweeper re-publishes stored jobs and events, the poller settles running jobs.

Size: ``GPUBILL_STORM_JOBS`` and ``GPUBILL_STORM_EVENTS``; by default 1,000 jobs and
500 events on the production backend (PostgreSQL + Redis), and a 200/100 smoke run on
the embedded one, which keeps the whole CI run within its time budget.
"""
from __future__ import annotations

import os
import random
import secrets
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from emulators.stripe import events as stripe_events
from gpubill.launcher import Stack
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.invariants import check
from ledger.models import EventStatus, Hold, HoldStatus, Job, JobStatus, LedgerTransaction, StripeEvent, Wallet
from pricing import load_packs
from tests.conftest import BACKEND, REDIS_URL, claim_redis_db
from tests.helpers import Api, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FULL = BACKEND == "postgres"
JOBS = int(os.environ.get("GPUBILL_STORM_JOBS", "1000" if FULL else "200"))
EVENTS = int(os.environ.get("GPUBILL_STORM_EVENTS", "500" if FULL else "100"))
WALLETS = 50
KILLS = 4  # one after each of the storm's first four waves


@pytest.fixture
def crash_stack(new_database, backend, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A stack of its own (own database, own broker) whose workers the test may kill."""
    env = {"GPUBILL_ENV": "test", "GPUBILL_DATA_DIR": str(tmp_path / "stack"),
           "GPUBILL_DATABASE_URL": new_database(),
           "GPUBILL_POLL_INTERVAL_S": "1", "GPUBILL_SILENT_AFTER_S": "3",
           "GPUBILL_OUTBOX_INTERVAL_S": "1", "GPUBILL_OUTBOX_AFTER_S": "4"}
    claimed = None
    if backend.broker_url:  # Redis: a database index of its own
        claimed = claim_redis_db()
        env["GPUBILL_BROKER_URL"] = f"{REDIS_URL}/{claimed.connection_pool.connection_kwargs['db']}"
    stack = Stack(env=env, worker_concurrency=2).start()
    try:
        yield stack
    finally:
        stack.stop()
        if claimed is not None:
            claimed.flushdb()


def _kill_a_worker(stack: Stack, kills: Counter, rng: random.Random) -> None:
    """SIGKILL one worker process group (main process and pool) and start it again."""
    name = rng.choice([c.name for c in stack.children if c.name.startswith("worker")])
    os.killpg(stack.child(name).proc.pid, signal.SIGKILL)
    kills[name] += 1
    stack.restart(name, grace_s=0)


def test_sigkilled_workers_lose_nothing_and_apply_nothing_twice(crash_stack) -> None:
    stack = crash_stack
    api = Api(stack)
    cfg = stack.settings
    sessions = make_sessionmaker(make_engine(cfg.sqlalchemy_url))
    pack = load_packs()["small"]
    tag = secrets.token_hex(3)
    users = [f"storm-{tag}-{i}" for i in range(WALLETS)]
    topups = [stripe_events.event("checkout.session.completed", stripe_events.paid_checkout_session(
        user_id=users[i % WALLETS], pack="small", amount_total=pack.price)) for i in range(EVENTS)]
    # Every wallet's first top-up lands before the storm, so jobs pass the pre-check.
    for e in topups[:WALLETS]:
        assert api.post_event(e).status_code == 200
    wait_for(lambda: all(api.wallet(u)["balance"] > 0 for u in users), 120, "first top-ups")

    rng = random.Random(tag)
    plans = [(users[i % WALLETS], {"emulator": {"execution_ms": rng.randint(20, 400),
                                                 **({"fail": True} if i % 10 == 0 else {})}})
             for i in range(JOBS)]
    kills: Counter[str] = Counter()
    started = time.monotonic()
    rest = topups[WALLETS:]
    deliveries = rest + rest[:50]  # some events twice
    answers, events_ok = [], []
    # The storm comes in KILLS + 1 waves; right after each wave but the last is sent, while
    # its jobs and events are in flight, a worker is SIGKILLed and restarted.
    with ThreadPoolExecutor(8) as pool:
        for wave in range(KILLS + 1):
            answers += pool.map(lambda p: api.submit(p[0], "framing", 30, p[1]), plans[wave::KILLS + 1])
            events_ok += pool.map(lambda e: api.post_event(e).status_code, deliveries[wave::KILLS + 1])
            if wave < KILLS:
                _kill_a_worker(stack, kills, rng)
    accepted = [a.json()["job_id"] for a in answers if a.status_code == 202]
    assert all(a.status_code in (202, 402) for a in answers)
    assert all(code == 200 for code in events_ok)

    def drained() -> bool:
        with transaction(sessions) as s:
            open_jobs = s.scalar(select(func.count()).select_from(Job)
                                 .where(Job.status.not_in(JobStatus.TERMINAL)))
            pending = s.scalar(select(func.count()).select_from(StripeEvent)
                               .where(StripeEvent.status == EventStatus.RECEIVED))
        return open_jobs == 0 and pending == 0
    wait_for(drained, 600, "the storm to drain")
    elapsed = time.monotonic() - started

    with transaction(sessions) as s:
        jobs = s.scalars(select(Job)).all()
        statuses = Counter(j.status for j in jobs)
        captures = Counter(s.scalars(select(LedgerTransaction.ref).where(LedgerTransaction.kind == "capture")))
        open_holds = s.scalar(select(func.count()).select_from(Hold).where(Hold.status == HoldStatus.OPEN))
        event_status = Counter(s.scalars(select(StripeEvent.status)))
        topup_txs = s.scalar(select(func.count()).select_from(LedgerTransaction)
                             .where(LedgerTransaction.kind == "topup"))
        balances = {w.user_id: w.balance for w in s.scalars(select(Wallet).where(Wallet.user_id.in_(users)))}
        violations = check(s)
    print(f"\nstorm: {len(accepted)} jobs accepted of {JOBS}, {EVENTS} events (+50 duplicates), "
          f"{sum(kills.values())} worker SIGKILLs {dict(kills)}, drained in {elapsed:.0f} s; "
          f"jobs {dict(statuses)}; events {dict(event_status)}")
    assert sum(kills.values()) == KILLS
    assert len(jobs) == len(accepted)
    assert set(statuses) <= {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.REJECTED}, statuses
    assert all(n == 1 for n in captures.values()), "a job charged twice"
    assert {j.id for j in jobs if j.status == JobStatus.COMPLETED} == set(captures)
    assert statuses[JobStatus.FAILED] >= 1 and open_holds == 0
    assert event_status == {EventStatus.PROCESSED: EVENTS}
    assert topup_txs == EVENTS  # every session credited, once
    charged: Counter[str] = Counter()
    for j in jobs:
        charged[j.user_id] += j.charge or 0
    assert balances == {u: pack.credits * (EVENTS // WALLETS) - charged[u] for u in users}
    assert violations == [], "\n".join(map(str, violations))
    sessions.kw["bind"].dispose()
