"""The pipeline load driver shared by ``benchmarks.pipeline`` and ``benchmarks.memory``:
fund wallets through the Stripe webhook, submit jobs through ``POST /v1/jobs`` (the
RunPod stand-in runs each at once: ``emulator`` overrides ``execution_ms`` = 0 and
``delay_ms`` = 0, see emulators/runpod/profiles.toml), wait for each job's notification
at a sink (``GPUBILL_NOTIFY_URL``), and read the per-job timings.

Times come from one clock (this machine): the client's 202, the stand-in's trace of
when ``/run`` arrived and when its completion webhook left (``GET /v2/{endpoint}/trace/{id}``,
stand-in only), the capture transaction's ``created_at`` (stamped in the DB transaction
that commits it) and the sink's arrival time — the method of ``benchmarks.job_overhead``.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import requests
from sqlalchemy import select

from emulators.stripe import events as stripe_events
from gpubill.demo import Client
from gpubill.launcher import Stack
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.models import Job, LedgerTransaction
from pricing import load_packs
from tests.notify_sink import NotifySink

USERS = 20
JOB = ("framing", {"duration_s": 10, "resolution": "1080p"}, {"emulator": {"execution_ms": 0, "delay_ms": 0}})


@dataclass
class TimedSink(NotifySink):
    """``tests.notify_sink.NotifySink`` that also records when each job's first
    notification arrived (epoch seconds)."""

    arrived: dict[str, float] = field(default_factory=dict)

    def __call__(self, environ: Any, start_response: Any) -> Any:
        now = time.time()
        answer = super().__call__(environ, start_response)
        with self._lock:
            last = self.deliveries[-1] if self.deliveries else None
            if last is not None:
                self.arrived.setdefault(last.event["data"]["object"]["job_id"], now)
        return answer

    def __enter__(self) -> TimedSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fund(stack: Stack, jobs: int, timeout_s: float = 300) -> list[str]:
    """Top up ``USERS`` wallets with enough large packs for ``jobs`` jobs (Stripe
    webhook → ``stripe`` queue); waits until every credit is in. Returns the user ids."""
    client = Client(stack.receiver_url, stack.settings)
    pack = load_packs()["large"]
    users = [f"bench-{i}" for i in range(USERS)]
    per_user = (jobs // USERS + 1) * 10 // pack.credits + 1  # a job holds 3 credits (10 s framing clip)
    for u in users:
        for _ in range(per_user):
            body = stripe_events.paid_checkout_session(user_id=u, pack="large", amount_total=pack.price)
            client.stripe_event(stripe_events.event("checkout.session.completed", body)).raise_for_status()
    deadline = time.monotonic() + timeout_s
    while any(client.wallet(u)["balance"] < per_user * pack.credits for u in users):
        if time.monotonic() > deadline:
            raise RuntimeError("top-ups not credited in time")
        time.sleep(0.2)
    return users


@dataclass
class Load:
    """One batch of submitted jobs: ``accepted`` job id → 202 time, ``refused`` count."""

    accepted: dict[str, float] = field(default_factory=dict)
    refused: int = 0
    first_submit: float = 0.0


def submit(stack: Stack, users: list[str], jobs: int, clients: int, rate: float | None) -> Load:
    """Submit ``jobs`` jobs from ``clients`` threads (one HTTP session each), as fast as
    they go (``rate`` None) or offered at ``rate`` per second."""
    load, lock = Load(first_submit=time.time()), threading.Lock()
    local = threading.local()
    start = time.monotonic()

    def one(i: int) -> None:
        if rate:
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
        if not hasattr(local, "client"):
            local.client = Client(stack.receiver_url, stack.settings)
        r = local.client.submit(users[i % len(users)], *JOB)
        at = time.time()
        with lock:
            if r.status_code == 202:
                load.accepted[r.json()["job_id"]] = at
            else:
                load.refused += 1

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(jobs)))
    return load


def wait_notified(sink: TimedSink, job_ids: list[str], timeout_s: float) -> bool:
    """Until every job in ``job_ids`` has had a notification at ``sink``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with sink._lock:
            if all(j in sink.arrived for j in job_ids):
                return True
        time.sleep(0.05)
    return False


@dataclass
class Overheads:
    to_run_ms: list[float]  # 202 answered → stand-in received /run
    to_capture_ms: list[float]  # stand-in sent the completion webhook → capture committed
    status_calls: int  # /status calls the stand-in answered for these jobs


def overheads(stack: Stack, load: Load) -> Overheads:
    """Per-job timings from the stand-in's trace and the capture rows (sorted)."""
    cfg = stack.settings
    sessions = make_sessionmaker(make_engine(cfg.sqlalchemy_url))
    ids = list(load.accepted)
    try:
        with transaction(sessions) as s:
            jobs = s.scalars(select(Job).where(Job.id.in_(ids))).all()
            captured = dict(s.execute(select(LedgerTransaction.ref, LedgerTransaction.created_at)
                                      .where(LedgerTransaction.kind == "capture",
                                             LedgerTransaction.ref.in_(ids))).tuples().all())
            where = [(j.id, j.endpoint_id, j.runpod_job_id) for j in jobs]
    finally:
        sessions.kw["bind"].dispose()
    auth = {"Authorization": f"Bearer {cfg.runpod_api_key.get_secret_value()}"}
    http = requests.Session()
    truth = {t["id"]: t for t in http.get(cfg.runpod_base_url.rsplit("/v2", 1)[0] + "/_control/jobs",
                                          headers=auth, timeout=30).json()["jobs"]}
    to_run, to_capture, status_calls = [], [], 0
    for job_id, endpoint_id, runpod_id in where:
        if runpod_id is None:
            continue
        trace = http.get(f"{cfg.runpod_base_url}/{endpoint_id}/trace/{runpod_id}", headers=auth,
                         timeout=5).json()
        status_calls += truth.get(runpod_id, {}).get("status_calls", 0)
        to_run.append((trace["received_at"] - load.accepted[job_id]) * 1000)
        if job_id in captured and trace.get("webhook_sent_at"):
            at = captured[job_id].replace(tzinfo=UTC).timestamp()
            to_capture.append((at - trace["webhook_sent_at"]) * 1000)
    return Overheads(sorted(to_run), sorted(to_capture), status_calls)
