"""Job overhead, excluding GPU time: request accepted → RunPod ``/run`` received, and
RunPod completion webhook sent → capture committed; p50/p99 over ``--jobs`` jobs.

    .venv/bin/python -m benchmarks.job_overhead [--jobs 1000] [--rate 20]

Runs the whole service on PostgreSQL + Redis at 127.0.0.1 with the RunPod stand-in.
Jobs are offered at a steady ``--rate`` (so the figures are per-job overhead, not queueing
behind a backlog) and run 50 ms of emulated GPU time each. Times come from one clock
(this machine): the 202 answer, the stand-in's trace of when ``/run`` arrived and when
the completion webhook left (``GET /v2/{endpoint}/trace/{id}``, stand-in only), and the
capture transaction's ``created_at`` (stamped inside the DB transaction that commits it).
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from base.settings import Settings
from benchmarks import load
from benchmarks.common import machine, percentile, running_stack
from gpubill.demo import Client
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.models import Job, JobStatus, LedgerTransaction


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=20, help="jobs offered per second")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    # The default /v1 rate limit (per API key) would refuse a benchmark's polling and submits.
    with tempfile.TemporaryDirectory() as tmp, \
            running_stack(Path(tmp), GPUBILL_RATE_LIMIT_API="1000000/minute") as stack:
        cfg = stack.settings
        client = Client(stack.receiver_url, cfg)
        users = load.fund(stack, args.jobs)
        sessions = make_sessionmaker(make_engine(cfg.sqlalchemy_url))
        accepted = _offer(client, users, args.jobs, args.rate)
        jobs = _wait_terminal(sessions, accepted)
        to_run, to_capture = _measure(cfg, sessions, jobs, accepted)
        done = sum(j.status == JobStatus.COMPLETED for j in jobs)
        print(f"{len(accepted)} jobs accepted at {args.rate:g}/s, {done} completed and captured")
        print(f"accepted → RunPod /run received:   p50 {percentile(to_run, 50):6.1f} ms   "
              f"p99 {percentile(to_run, 99):6.1f} ms   (n={len(to_run)})")
        print(f"webhook sent → capture committed: p50 {percentile(to_capture, 50):6.1f} ms   "
              f"p99 {percentile(to_capture, 99):6.1f} ms   (n={len(to_capture)})")
        sessions.kw["bind"].dispose()


def _offer(client: Client, users: list[str], n: int, rate: float) -> dict[str, float]:
    """Submit ``n`` 50 ms framing jobs at a steady ``rate`` per second (one thread each);
    returns job id → epoch seconds its 202 answer arrived."""
    accepted: dict[str, float] = {}
    lock = threading.Lock()

    def submit(i: int) -> None:
        r = client.submit(users[i % len(users)], "framing", {"duration_s": 30, "resolution": "1080p"},
                          {"emulator": {"execution_ms": 50}})
        t = time.time()
        if r.status_code == 202:
            with lock:
                accepted[r.json()["job_id"]] = t

    start = time.monotonic()
    threads = []
    for i in range(n):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        th = threading.Thread(target=submit, args=(i,))
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    return accepted


def _wait_terminal(sessions: sessionmaker[Session], accepted: dict[str, float]) -> Sequence[Job]:
    """The accepted jobs once all are terminal (or after 300 s)."""
    deadline = time.monotonic() + 300
    while True:
        with transaction(sessions) as s:
            jobs = s.scalars(select(Job).where(Job.id.in_(list(accepted)))).all()
        if all(j.status in JobStatus.TERMINAL for j in jobs) or time.monotonic() > deadline:
            return jobs
        time.sleep(1)


def _measure(cfg: Settings, sessions: sessionmaker[Session], jobs: Sequence[Job],
             accepted: dict[str, float]) -> tuple[list[float], list[float]]:
    """Sorted ms: accepted → RunPod ``/run`` received, and webhook sent → capture committed
    (the stand-in's trace against the capture transaction's ``created_at``)."""
    with transaction(sessions) as s:
        captured = {ref: at for ref, at in s.execute(
            select(LedgerTransaction.ref, LedgerTransaction.created_at)
            .where(LedgerTransaction.kind == "capture", LedgerTransaction.ref.in_(list(accepted))))}
    to_run, to_capture = [], []
    trace_auth = {"Authorization": f"Bearer {cfg.runpod_api_key.get_secret_value()}"}
    for job in jobs:
        if job.runpod_job_id is None:
            continue
        trace = requests.get(f"{cfg.runpod_base_url}/{job.endpoint_id}/trace/{job.runpod_job_id}",
                             headers=trace_auth, timeout=5).json()
        to_run.append((trace["received_at"] - accepted[job.id]) * 1000)
        if job.id in captured and trace.get("webhook_sent_at"):
            at = captured[job.id].replace(tzinfo=UTC).timestamp()
            to_capture.append((at - trace["webhook_sent_at"]) * 1000)
    return sorted(to_run), sorted(to_capture)


if __name__ == "__main__":
    main()
