"""A storm of GPU jobs and Stripe top-ups sent in waves to a stack of its own, and the
check that it drained to one money outcome per job and one credit per event.

Used by the crash test (workers SIGKILLed between waves) and the broker-outage test
(the broker stopped for some waves). Every wallet is funded before the storm; a tenth of
the jobs fail on the RunPod stand-in; 50 events are delivered twice. Jobs vary in type,
clip length, resolution and upscale factor, and a tenth run long enough (2.2–3.5 s) that
their charge is above ``min_charge`` and below the hold.

The money is checked against the independent model (``tests.model``): each job's charge
and release from the rate card's formulas applied to the executionTime the RunPod
stand-in reports on ``/status``, each wallet from the packs it paid for.
"""
from __future__ import annotations

import random
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import func, select
from urllib3.util.retry import Retry

from emulators.stripe import events as stripe_events
from gpubill.demo import Client
from gpubill.launcher import Stack
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.invariants import check
from ledger.models import EventStatus, Hold, HoldStatus, Job, JobStatus, LedgerTransaction, StripeEvent, Wallet
from pricing import load_packs
from tests.conftest import REDIS_URL, Backend, claim_redis_db
from tests.helpers import Api, wait_for
from tests.model import rates
from tests.model.wallets import Model

WALLETS = 50
JOB_TYPES = ("framing", "overlay", "upscale", "track")
RESOLUTIONS = ("720p", "1080p", "1440p", "2160p")
TWICE = 50  # events delivered a second time


@contextmanager
def storm_stack(database_url: str, backend: Backend, data_dir: Path, *,
                own_broker: bool = False, env: dict[str, str] | None = None) -> Iterator[Stack]:
    """A stack on ``database_url`` with short safety-net intervals (``env`` overrides
    or adds ``GPUBILL_*`` settings). Its broker is a Redis database index of its own on
    the postgres backend, or (``own_broker``, and always on the embedded backend) an
    embedded broker the test may stop."""
    env = {"GPUBILL_ENV": "test", "GPUBILL_DATA_DIR": str(data_dir / "stack"),
           "GPUBILL_DATABASE_URL": database_url,
           "GPUBILL_POLL_INTERVAL_S": "1", "GPUBILL_SILENT_AFTER_S": "3",
           "GPUBILL_OUTBOX_INTERVAL_S": "1", "GPUBILL_OUTBOX_AFTER_S": "4", **(env or {})}
    claimed = None
    if backend.broker_url and not own_broker:
        claimed = claim_redis_db()
        env["GPUBILL_BROKER_URL"] = f"{REDIS_URL}/{claimed.connection_pool.connection_kwargs['db']}"
    else:
        env["GPUBILL_BROKER_URL"] = ""  # the stack starts its embedded broker
    stack = Stack(env=env, worker_concurrency=2).start()
    try:
        yield stack
    finally:
        stack.stop()
        if claimed is not None:
            claimed.flushdb()


@dataclass
class Wave:
    """What one wave sent and how the receiver answered."""

    accepted: list[str]  # job ids answered 202
    job_codes: list[int]
    event_codes: list[int]
    event_ids: list[str]


class Storm:
    """``jobs`` GPU jobs and ``events`` paid-checkout events over ``WALLETS`` wallets."""

    def __init__(self, stack: Stack, jobs: int, events: int) -> None:
        self.stack, self.api = stack, Api(stack)
        self.sessions = make_sessionmaker(make_engine(stack.settings.sqlalchemy_url))
        self.pack = load_packs()["small"]
        tag = secrets.token_hex(3)
        self.rng = random.Random(tag)
        self.users = [f"storm-{tag}-{i}" for i in range(WALLETS)]
        self.events = [stripe_events.event("checkout.session.completed", stripe_events.paid_checkout_session(
            user_id=self.users[i % WALLETS], pack="small", amount_total=self.pack.price))
            for i in range(events)]
        self.plans = [self._plan(i) for i in range(jobs)]
        self.plan_of_job: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {}
        rest = self.events[WALLETS:]
        self.deliveries = rest + rest[:TWICE]
        self.sent: list[Wave] = []
        self.started = time.monotonic()
        self.tag = tag
        # As a real client would: retry a request whose connection broke (gunicorn closes
        # idle keep-alive connections, racing a new request on them). Safe because every
        # request is idempotent: jobs carry an Idempotency-Key, events their evt_ id.
        self.api.http.mount("http://", HTTPAdapter(pool_maxsize=8, max_retries=Retry(
            total=3, connect=3, read=3, status=0, allowed_methods=None, backoff_factor=0.2)))

    def fund(self) -> None:
        """Every wallet's first top-up lands before the storm, so jobs pass the pre-check."""
        for e in self.events[:WALLETS]:
            assert self.api.post_event(e).status_code == 200
        wait_for(lambda: all(self.api.wallet(u)["balance"] > 0 for u in self.users), 120, "first top-ups")
        self.started = time.monotonic()

    def waves(self, n: int) -> Iterator[Wave]:
        """Send the storm in ``n`` interleaved waves from 8 threads, yielding after each
        one is answered (the caller crashes or stops things in between). Every job is
        answered 202 or 402 and every event 200, whatever is down behind the receiver."""
        with ThreadPoolExecutor(8) as pool:
            for w in range(n):
                answers = list(pool.map(self._submit, range(w, len(self.plans), n)))
                events = self.deliveries[w::n]
                codes = list(pool.map(lambda e: self._deliver(e).status_code, events))
                wave = Wave([a.json()["job_id"] for a in answers if a.status_code == 202],
                            [a.status_code for a in answers], codes, [e["id"] for e in events])
                assert set(wave.job_codes) <= {202, 402}, Counter(wave.job_codes)
                assert set(wave.event_codes) == {200}, Counter(wave.event_codes)
                self.sent.append(wave)
                yield wave

    def _plan(self, i: int) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
        """(user, job type, params, input) of job ``i``: varied type, length, resolution,
        scale; every tenth fails on RunPod, every tenth (others) runs 2.2–3.5 s."""
        job_type = JOB_TYPES[i % len(JOB_TYPES)]
        params: dict[str, Any] = {"duration_s": self.rng.choice((5, 12.5, 30, 60)),
                                  "resolution": self.rng.choice(RESOLUTIONS)}
        if job_type == "upscale":
            params["scale"] = self.rng.choice((2, 4))
        ms = self.rng.randint(2200, 3500) if i % 10 == 5 else self.rng.randint(20, 400)
        emulator = {"execution_ms": ms, **({"fail": "storm: scripted GPU failure"} if i % 10 == 0 else {})}
        return self.users[i % WALLETS], job_type, params, {"emulator": emulator}

    def _submit(self, i: int) -> requests.Response:
        user, job_type, params, job_input = self.plans[i]
        answer = Client.submit(self.api, user, job_type, params, job_input,
                               headers={"Idempotency-Key": f"storm-{self.tag}-{i}"})
        if answer.status_code == 202:
            self.plan_of_job[answer.json()["job_id"]] = self.plans[i]
        return answer

    def runpod_says(self, jobs: list[Job]) -> dict[str, dict[str, Any]]:
        """Job id → the RunPod stand-in's ``/status`` body for each dispatched job (its
        ground truth: status and measured executionTime, ms)."""
        cfg = self.stack.settings
        auth = {"Authorization": f"Bearer {cfg.runpod_api_key.get_secret_value()}"}
        endpoints = {t: j["endpoint_id"] for t, j in rates.card()["jobs"].items()}

        def status(job: Job) -> tuple[str, dict[str, Any]]:
            r = self.api.http.get(f"{cfg.runpod_base_url}/{endpoints[job.type]}/status/"
                                  f"{job.runpod_job_id}", headers=auth, timeout=30)
            assert r.status_code == 200, (job.id, r.status_code, r.text)
            return job.id, r.json()
        with ThreadPoolExecutor(8) as pool:
            return dict(pool.map(status, [j for j in jobs if j.runpod_job_id]))

    def _deliver(self, event: dict[str, Any]) -> requests.Response:
        payload, headers = stripe_events.signed(event, self.api.secret)
        return self.api.http.post(f"{self.api.base}/webhooks/stripe", data=payload, headers=headers, timeout=30)

    def job_statuses(self, job_ids: list[str]) -> Counter[str]:
        with transaction(self.sessions) as s:
            return Counter(s.scalars(select(Job.status).where(Job.id.in_(job_ids))))

    def event_statuses(self, event_ids: list[str]) -> Counter[str]:
        with transaction(self.sessions) as s:
            return Counter(s.scalars(select(StripeEvent.status).where(StripeEvent.id.in_(set(event_ids)))))

    def drain(self, timeout_s: float) -> float:
        """Wait until no job is open and no event unprocessed; seconds since the storm began."""
        def drained() -> bool:
            with transaction(self.sessions) as s:
                open_jobs = s.scalar(select(func.count()).select_from(Job)
                                     .where(Job.status.not_in(JobStatus.TERMINAL)))
                pending = s.scalar(select(func.count()).select_from(StripeEvent)
                                   .where(StripeEvent.status == EventStatus.RECEIVED))
            return open_jobs == 0 and pending == 0
        wait_for(drained, timeout_s, "the storm to drain")
        return time.monotonic() - self.started

    def verify(self) -> dict[str, Any]:
        """Assert the drained storm's money: each accepted job completed (charged once),
        failed or rejected (nothing charged), no hold open, each event processed and
        credited once, every wallet equal to the straight-line model, no invariant
        violated. Returns the counts for the test to print."""
        accepted = [j for w in self.sent for j in w.accepted]
        with transaction(self.sessions) as s:
            jobs = s.scalars(select(Job)).all()
            statuses = Counter(j.status for j in jobs)
            captures = Counter(s.scalars(select(LedgerTransaction.ref)
                                         .where(LedgerTransaction.kind == "capture")))
            open_holds = s.scalar(select(func.count()).select_from(Hold).where(Hold.status == HoldStatus.OPEN))
            event_status = Counter(s.scalars(select(StripeEvent.status)))
            topup_txs = s.scalar(select(func.count()).select_from(LedgerTransaction)
                                 .where(LedgerTransaction.kind == "topup"))
            balances = {w.user_id: w.balance for w in s.scalars(select(Wallet).where(Wallet.user_id.in_(self.users)))}
            violations = check(s)
        assert sorted(j.id for j in jobs) == sorted(accepted)
        assert set(statuses) <= {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.REJECTED}, statuses
        assert all(n == 1 for n in captures.values()), "a job charged twice"
        assert {j.id for j in jobs if j.status == JobStatus.COMPLETED} == set(captures)
        assert statuses[JobStatus.FAILED] >= 1 and open_holds == 0
        assert event_status == {EventStatus.PROCESSED: len(self.events)}
        assert topup_txs == len(self.events)  # every session credited, once
        # The independent model: packs paid, and what RunPod says each job executed.
        model = Model()
        for e in self.events:
            obj = e["data"]["object"]
            model.topup(obj["id"], obj["client_reference_id"] or obj["metadata"]["user_id"], "small")
        truth = self.runpod_says(jobs)
        for j in jobs:
            said = truth.get(j.id)
            end = {"COMPLETED": "completed", "FAILED": "failed"}.get(
                said["status"], "unexpected " + said["status"]) if said else "refused"
            user, job_type, params, _ = self.plan_of_job[j.id]
            want = model.job(j.id, user, job_type, params["duration_s"], params["resolution"],
                             params.get("scale"), end=end,
                             execution_ms=said.get("executionTime", 0) if said else 0)
            if end == "refused":  # never reached RunPod: nothing charged
                assert (j.status, j.charge or 0) == (JobStatus.REJECTED, 0), (j.id, j.status, j.error)
            else:
                assert (j.status, j.hold_credits, j.charge or 0, j.released) == (
                    end, want.hold, want.charge, want.release), (j.id, said)
        assert balances == {u: model.balance(u) for u in self.users}
        assert violations == [], "\n".join(map(str, violations))
        return {"jobs": len(self.plans), "accepted": len(accepted), "events": len(self.events),
                "duplicates": TWICE, "job_statuses": dict(statuses), "event_statuses": dict(event_status)}

    def close(self) -> None:
        self.api.http.close()
        self.sessions.kw["bind"].dispose()
