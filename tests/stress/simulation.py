"""A whole-system seeded simulation (issue 13, item 3; in the spirit of TigerBeetle's VOPR).

One ``random.Random(seed)`` decides a run of operations against one running stack
(receiver, worker, beat, the RunPod and Stripe stand-ins): GPU jobs of every type, length,
resolution and scale with scripted RunPod behaviours (``input.emulator``: failures, never
finishing, lost callbacks, duplicated callbacks, lost ``/run`` answers, ``/run`` and
``/status`` errors, RunPod forgetting the job, failing ``/cancel``, queue delays); user
cancels before, during and after dispatch; hold expiries (the hold's ``expires_at`` moved
into the past, as the clock running out); correctly tokened RunPod callbacks that lie
(for running jobs, for ended ones, naming RunPod jobs that do not exist); Stripe top-ups
by card and by delayed methods (settled, failed, left pending), sessions expired, events
held back and delivered late (refunds and disputes before their top-ups), duplicated or
shuffled; refunds partial and full, failed refunds, disputes won and lost, subscriptions
and their renewal invoices, refunded and disputed too; and SIGKILL of the receiver, beat,
a whole worker or one worker pool process (inside a task), each restarted as a
supervisor would.

At quiescence (waited for on conditions, with deadlines) ``verify`` checks the ledger
against the independent model (``tests.model``) fed only with the stand-ins' ground
truth — RunPod ``GET /_control/jobs`` (state, executed ms) and Stripe ``GET
/_control/ledger`` (payments, refunds, disputes, invoices) — plus every invariant,
``gpubill reconcile`` (exit 0) and nothing parked. The operations are a pure function of
the seed; timing (what a kill interrupts, which callback wins a race) is not, so a
replay reproduces the same run of operations, not the same interleaving to the
millisecond. Every assertion message carries ``GPUBILL_SIM_SEED=<seed>``.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import func, select, update
from urllib3.util.retry import Retry

from emulators.stripe.control import StandInError
from gpubill.launcher import Stack
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.invariants import check
from ledger.models import EventStatus, Hold, HoldStatus, Job, JobStatus, RunPodJob, StripeEvent, Wallet, utcnow
from ledger.reconcile import gpu_violations
from tests.helpers import Api, wait_for
from tests.model import rates
from tests.model.wallets import Model
from tests.runpod_truth import runpod_jobs
from webhook_receiver.tokens import webhook_token

JOB_TYPES = ("framing", "overlay", "upscale", "track")
RESOLUTIONS = ("720p", "1080p", "1440p", "2160p")
DURATIONS = (1, 5, 12.5, 30, 60, 240)
PACKS = ("small", "medium", "large")
PLANS = {"starter": "price_gpubill_starter_monthly", "pro": "price_gpubill_pro_monthly"}
USERS = 10  # wallets per seed
HELD_OPS = 40  # a held-back Stripe event is delivered at most this many operations later
# Settings for the simulation's stack (on top of storm_stack's short safety nets).
STACK_ENV = {"GPUBILL_EXPIRY_INTERVAL_S": "1", "GPUBILL_STRIPE_RETRY_BASE_S": "0.25",
             "GPUBILL_RUNPOD_TIMEOUT_S": "3", "GPUBILL_RETRY_BACKOFF_S": "0.2",
             "GPUBILL_RATE_LIMIT_API": "100000/minute", "GPUBILL_POLL_MAX_INTERVAL_S": "4",
             "GPUBILL_RECEIVER_WORKERS": "1"}  # restarts in half the time
RUNPOD_ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}

# Operation → weight. Each chosen operation counts as one. The stack drains about ten
# tasks a second on two cores, so about half the operations are cheap ones that start no
# work yet check an answer: replays and conflicts, refused input, quotes against the
# model, redelivered Stripe events, late callbacks, reads.
WEIGHTS = {
    "submit": 12, "submit_cancel": 3, "cancel": 6, "expire": 2,
    "forge_running": 4, "forge_late": 4, "forge_unknown": 1,
    "topup_card": 3, "topup_async": 2, "settle_async": 2, "topup_held": 2, "deliver_held": 3,
    "topup_abandon": 1, "refund": 3, "fail_refund": 1, "dispute": 2, "close_dispute": 2,
    "subscribe": 1, "renew": 1,
    # cheap
    "submit_replay": 5, "submit_conflict": 3, "submit_invalid": 5, "quote": 8, "redeliver": 6,
    "read_job": 4, "read_wallet": 4,
}


class SimulationFailure(AssertionError):
    pass


@dataclass
class SimJob:
    id: str
    user: str
    type: str
    params: dict[str, Any]
    nonce: str
    emulator: dict[str, Any]
    cancel_asked: bool = False
    expire_asked: bool = False
    forged_ids: list[str] = field(default_factory=list)  # RunPod ids no RunPod job has


@dataclass
class Purchase:
    """A Checkout Session the simulation opened (a pack, or a subscription's plan)."""

    session: str
    user: str
    pack: str | None = None
    plan: str | None = None
    state: str = "open"  # open | paid | pending | failed | expired
    charge_cents: int = 0
    refunded: int = 0  # cents under active refunds (what the stand-in lets us refund more)
    refunds: list[tuple[str, int]] = field(default_factory=list)  # (id, cents), not failed
    sub_id: str | None = None
    invoices: list[tuple[str, int]] = field(default_factory=list)  # subscriptions: (in_…, cents)


@dataclass
class Simulation:
    """Drives one seed's operations against ``stack``; call ``run`` then ``verify``."""

    stack: Stack
    seed: int
    ops: int
    log: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    took: Counter[str] = field(default_factory=Counter)  # seconds spent per operation kind

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.api = Api(self.stack)
        # A client retries a request whose connection broke (a killed receiver's, or an
        # idle keep-alive gunicorn closed); every request here is idempotent.
        self.api.http.mount("http://", HTTPAdapter(pool_maxsize=4, max_retries=Retry(
            total=8, connect=8, read=2, status=0, allowed_methods=None, backoff_factor=0.2)))
        self.stripe = self.api.stripe
        self.cfg = self.stack.settings
        self.sessions = make_sessionmaker(make_engine(self.cfg.sqlalchemy_url))
        self.tag = f"sim{self.seed}-{uuid.uuid4().hex[:4]}"  # fresh names if a seed reruns on a stack
        self.users = [f"{self.tag}-u{i}" for i in range(USERS)]
        self.jobs: dict[str, SimJob] = {}
        self.replayable: list[tuple[str, dict[str, Any], str]] = []  # (key, body, job id)
        self.purchases: list[Purchase] = []
        self.held: list[tuple[int, dict[str, Any]]] = []  # (since op, Stripe event) not delivered yet
        self.op_index = 0
        self.undelivered: list[dict[str, Any]] = []  # deliveries that failed (receiver down)
        self.delivered: list[dict[str, Any]] = []  # what Stripe may deliver again
        self.disputes: list[str] = []  # open dispute ids
        self.job_seq = 0

    # ------------------------------------------------------------------ running
    def fail(self, what: str) -> SimulationFailure:
        ids = set(re.findall(r"job_[0-9a-f]{32}", what))
        tail = "\n".join([line for line in self.log[:-25] if ids & set(re.findall(r"job_[0-9a-f]{32}", line))]
                         + ["..."] + self.log[-25:])
        return SimulationFailure(
            f"simulation seed {self.seed} failed: {what}\n"
            f"replay: GPUBILL_SIM_SEED={self.seed} GPUBILL_SIM_OPS={self.ops} "
            f"pytest tests/stress/test_simulation.py -k replay\nlast operations:\n{tail}")

    def run(self) -> None:
        """The seed's operations: every user funded first (each a counted top-up), then
        ``ops`` random ones, with SIGKILLs at seeded positions."""
        # Kills: beat early (a killed beat's RedBeat lock lasts 30 s), a worker pool
        # process at any point, and in half the seeds the receiver or a whole worker
        # (restarting one costs seconds: the budget allows few).
        kill_at: dict[int, str] = {}
        for what in ("beat", "worker-task", self.rng.choice(("receiver", "worker", "", ""))):
            at = self.rng.randrange(self.ops * 2 // 5 if what == "beat" else self.ops)
            if what and at not in kill_at:
                kill_at[at] = what
        t0 = time.monotonic()
        for user in self.users:
            self.counts["fund"] += 1
            self.log.append("fund")
            self._topup(user, self.rng.choice(PACKS), deliver=True)
        self.took["fund"] += time.monotonic() - t0
        names, weights = list(WEIGHTS), list(WEIGHTS.values())
        for i in range(self.ops):
            self.op_index = i
            late = [ev for at, ev in self.held if at <= i - HELD_OPS]
            if late:  # as Stripe's retries would, within seconds
                self.held = [(at, ev) for at, ev in self.held if at > i - HELD_OPS]
                self._deliver(late)
            if i in kill_at:
                self._kill(kill_at[i])
            op = self.rng.choices(names, weights)[0]
            self.counts[op] += 1
            self.log.append(f"{i}: {op}")
            t0 = time.monotonic()
            try:
                getattr(self, f"_op_{op}")()
                self.took[op] += time.monotonic() - t0
            except SimulationFailure:
                raise
            except AssertionError as err:
                raise self.fail(f"operation {i} ({op}): {err}") from err

    def _check(self, ok: bool, what: str) -> None:
        if not ok:
            raise AssertionError(what)

    # ------------------------------------------------------------------ jobs
    def _new_job_body(self) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
        rng = self.rng
        user, job_type = rng.choice(self.users), rng.choice(JOB_TYPES)
        params: dict[str, Any] = {"duration_s": rng.choice(DURATIONS), "resolution": rng.choice(RESOLUTIONS)}
        if job_type == "upscale":
            params["scale"] = rng.choice((2, 4))
        emulator: dict[str, Any] = {"execution_ms": rng.randint(20, 800)}
        for _ in range(rng.choice((0, 0, 1, 1, 2))):
            kind = rng.choice(("long", "fail", "never_finish", "skip_webhook", "webhook_twice",
                               "run_errors", "lost_answers", "status_errors", "forget", "cancel_errors",
                               "delay"))
            if kind == "long":
                emulator["execution_ms"] = rng.randint(1500, 2500)
            elif kind == "fail":
                emulator["fail"] = "simulated GPU failure"
            elif kind == "never_finish":
                emulator["never_finish"] = True
            elif kind == "skip_webhook":
                emulator["skip_webhook"] = True
            elif kind == "webhook_twice":
                emulator["webhook_twice"] = True
            elif kind == "run_errors":
                emulator["run_errors"] = rng.choice(([503], [429], [429, 503]))
            elif kind == "lost_answers":
                emulator["lost_answers"] = rng.choice(([503], ["timeout"]))
            elif kind == "status_errors":
                emulator["status_errors"] = [500, 503]
            elif kind == "forget":
                emulator["forget_after_s"] = rng.choice((1, 2, 4))
            elif kind == "cancel_errors":
                emulator["cancel_errors"] = [503]
            else:
                emulator["delay_ms"] = rng.randint(200, 2000)
        if "lost_answers" in emulator:
            # A stray whose callback never comes is invisible to us by design
            # (docs/runpod-boundary.md §3): never both. Nor one that never finishes:
            # its callback comes only at its executionTimeout, past the quiescence
            # budget (random seed 346752: the job was cancelled while its /run answer
            # was being lost, and the stray it left ran on unseen).
            emulator.pop("skip_webhook", None)
            emulator.pop("never_finish", None)
        self.job_seq += 1
        return user, job_type, params, {"nonce": f"{self.tag}-j{self.job_seq}", "emulator": emulator}

    def _submit(self, key: str | None = None) -> SimJob | None:
        user, job_type, params, job_input = self._new_job_body()
        headers = {"Idempotency-Key": key} if key else None
        r = self.api.http.post(f"{self.api.base}/v1/jobs", timeout=30, headers=headers, json={
            "user_id": user, "type": job_type, "params": params, "input": job_input})
        self._check(r.status_code in (202, 402), f"POST /v1/jobs → {r.status_code} {r.text[:300]}")
        if r.status_code != 202:
            return None
        job = SimJob(r.json()["job_id"], user, job_type, params, job_input["nonce"], job_input["emulator"])
        self.jobs[job.id] = job
        self.log[-1] += f" {job.id} {job_type} {params} {job.emulator}"
        if key:
            self.replayable.append((key, {"user_id": user, "type": job_type, "params": params,
                                          "input": job_input}, job.id))
        return job

    def _op_submit(self) -> None:
        self._submit(f"{self.tag}-k{self.job_seq}" if self.rng.random() < 0.3 else None)

    def _op_submit_cancel(self) -> None:
        job = self._submit()
        if job is not None:
            self._cancel(job)

    def _op_submit_replay(self) -> None:
        if not self.replayable:
            return self._op_submit()
        key, body, job_id = self.rng.choice(self.replayable)
        r = self.api.http.post(f"{self.api.base}/v1/jobs", timeout=30, json=body,
                               headers={"Idempotency-Key": key})
        self._check(r.status_code == 202 and r.json()["job_id"] == job_id,
                    f"replayed job {job_id}: {r.status_code} {r.text[:300]}")

    def _op_submit_conflict(self) -> None:
        """The same Idempotency-Key with another body: 409, nothing stored."""
        if not self.replayable:
            return self._op_quote()
        key, body, job_id = self.rng.choice(self.replayable)
        other = {**body, "params": {**body["params"], "duration_s": body["params"]["duration_s"] + 1}}
        r = self.api.http.post(f"{self.api.base}/v1/jobs", timeout=30, json=other,
                               headers={"Idempotency-Key": key})
        self._check(r.status_code == 409, f"conflicting replay of {job_id}: {r.status_code} {r.text[:300]}")

    def _op_submit_invalid(self) -> None:
        """A job the API must refuse with a 4xx JSON error (nothing stored: the final
        check finds no job the simulation did not have accepted)."""
        user, job_type, params, job_input = self._new_job_body()
        bad = self.rng.choice(("type", "resolution", "duration", "scale", "input", "user"))
        body: dict[str, Any] = {"user_id": user, "type": job_type, "params": params, "input": job_input}
        if bad == "type":
            body["type"] = "karaoke"
        elif bad == "resolution":
            params["resolution"] = "8k"
        elif bad == "duration":
            params["duration_s"] = self.rng.choice((-1, 0, None, 10**9, [30]))
        elif bad == "scale":
            params["scale"] = 3 if job_type == "upscale" else 2
        elif bad == "input":
            job_input["emulator"] = "not an object" if self.rng.random() < 0.5 else {"bogus": 1}
            body["input"] = "x" * 10 if self.rng.random() < 0.5 else job_input
        else:
            body["user_id"] = self.rng.choice(("", "x" * 300, None, "a b"))
        r = self.api.http.post(f"{self.api.base}/v1/jobs", timeout=30, json=body)
        if r.status_code == 202:  # only the stand-in's own input check can refuse this one
            self._check(bad == "input", f"invalid job ({bad}) accepted: {body}")
            job = SimJob(r.json()["job_id"], user, job_type, params, job_input["nonce"], {})
            self.jobs[job.id] = job
            return
        self._check(400 <= r.status_code < 500 and r.headers.get("content-type", "").startswith("application/json"),
                    f"invalid job ({bad}) → {r.status_code} {r.text[:300]}")
        self.log[-1] += f" {bad} → {r.status_code}"

    def _op_quote(self) -> None:
        """``POST /v1/quotes`` equals the model's hold and funded GPU-seconds."""
        _, job_type, params, _ = self._new_job_body()
        r = self.api.http.post(f"{self.api.base}/v1/quotes", timeout=30, json={"type": job_type, "params": params})
        self._check(r.status_code == 200, f"quote {job_type} {params} → {r.status_code} {r.text[:300]}")
        q = rates.quote(job_type, params["duration_s"], params["resolution"], params.get("scale"))
        got = r.json()
        self._check((got["hold"], got["max_gpu_seconds"], got["min_charge"])
                    == (q.hold, q.max_gpu_seconds, q.min_charge), f"quote {job_type} {params}: {got} vs model {q}")

    def _op_read_job(self) -> None:
        if self.jobs:
            job = self.jobs[self.rng.choice(list(self.jobs))]
            view = self._job_view(job.id)
            self._check(view["user_id"] == job.user and view["type"] == job.type, f"job {job.id}: {view}")

    def _op_read_wallet(self) -> None:
        user = self.rng.choice(self.users)
        r = self.api.http.get(f"{self.api.base}/v1/wallets/{user}", timeout=30)
        self._check(r.status_code == 200, f"wallet {user} → {r.status_code}")
        w = r.json()
        self._check(w["held"] >= 0 and w["available"] == w["balance"] - w["held"], f"wallet {user}: {w}")

    def _cancel(self, job: SimJob) -> None:
        r = self.api.http.post(f"{self.api.base}/v1/jobs/{job.id}/cancel", timeout=30)
        self._check(r.status_code in (202, 409), f"cancel {job.id} → {r.status_code} {r.text[:300]}")
        if r.status_code == 202:
            job.cancel_asked = True
        self.log[-1] += f" cancel {job.id} → {r.status_code}"

    def _op_cancel(self) -> None:
        if self.jobs:
            self._cancel(self.jobs[self.rng.choice(list(self.jobs))])

    def _op_expire(self) -> None:
        """The hold's clock runs out: ``expires_at`` moved into the past (DB time is what
        the sweep compares), as ``test_job_lifecycle`` does for one job."""
        if not self.jobs:
            return
        job = self.jobs[self.rng.choice(list(self.jobs))]
        with transaction(self.sessions) as s:
            moved = s.execute(update(Hold).where(Hold.job_id == job.id, Hold.status == HoldStatus.OPEN)
                              .values(expires_at=utcnow() - timedelta(seconds=1))).rowcount
        if moved:
            job.expire_asked = True
        self.log[-1] += f" {job.id} moved={moved}"

    def _callback(self, job_id: str, body: dict[str, Any]) -> None:
        token = webhook_token(self.cfg.runpod_token_secret.get_secret_value(), job_id)
        r = self.api.http.post(f"{self.stack.receiver_url}/webhooks/runpod/{token}", json=body, timeout=30)
        self._check(r.status_code == 200, f"callback for {job_id} → {r.status_code} {r.text[:300]}")
        self.log[-1] += f" {job_id} {body}"

    def _lie(self, runpod_id: str, running: bool = False) -> dict[str, Any]:
        """A callback body that lies (for a running job: mostly a COMPLETED whose
        executionTime is far from the truth, which a receiver billing from the body
        would charge)."""
        status = self.rng.choice(("COMPLETED",) * (6 if running else 2) + ("FAILED", "CANCELLED", "TIMED_OUT",
                                                                         "IN_PROGRESS"))
        return {"id": runpod_id, "status": status, "delayTime": 1,
                "executionTime": self.rng.choice((1, 60_000, 10_000_000) if running else (0, 1, 999, 60_000)),
                "output": {"forged": True}, "error": "forged"}

    def _job_view(self, job_id: str) -> dict[str, Any]:
        r = self.api.http.get(f"{self.api.base}/v1/jobs/{job_id}", timeout=30)
        self._check(r.status_code == 200, f"GET job {job_id} → {r.status_code}")
        return r.json()

    def _op_forge_running(self) -> None:
        """A correctly tokened callback that lies, for a job still running (or about to)."""
        live = [j for j in self.jobs.values() if not j.cancel_asked][-30:]
        for job in self.rng.sample(live, min(6, len(live))):  # the first one running now
            view = self._job_view(job.id)
            rp = (view.get("runpod") or {}).get("job_id")
            if rp and view["status"] in ("dispatched", "in_progress"):
                for _ in range(self.rng.choice((1, 2, 3))):
                    self._callback(job.id, self._lie(rp, running=True))
                return

    def _op_forge_late(self) -> None:
        """A lie (or a duplicate) arriving after the job ended."""
        if not self.jobs:
            return
        job = self.jobs[self.rng.choice(list(self.jobs))]
        view = self._job_view(job.id)
        rp = (view.get("runpod") or {}).get("job_id")
        if rp:
            self._callback(job.id, self._lie(rp))

    def _op_forge_unknown(self) -> None:
        """A tokened callback naming a RunPod job that does not exist."""
        if self.jobs:
            job = self.jobs[self.rng.choice(list(self.jobs))]
            job.forged_ids.append(str(uuid.UUID(int=self.rng.getrandbits(128))))
            self._callback(job.id, self._lie(job.forged_ids[-1]))

    # ------------------------------------------------------------------ Stripe
    def _deliver(self, events: list[dict[str, Any]]) -> None:
        self.delivered.extend(events)
        for ev in events:
            r = self.api.post_event(ev)
            self._check(r.status_code == 200, f"Stripe event {ev['type']} → {r.status_code} {r.text[:300]}")

    def _sent(self, result: dict[str, Any]) -> dict[str, Any]:
        """Queue for redelivery what the stand-in could not deliver (as Stripe retries)."""
        codes = result.get("deliveries") or []
        if codes and set(codes) != {200}:
            self.undelivered.extend(result["events"])
        elif codes:
            self.delivered.extend(result["events"])
        return result

    def _delivery(self) -> dict[str, Any]:
        r = self.rng.random()
        if r < 0.15:
            return {"duplicate": True, "order": "shuffled"}
        if r < 0.25:
            return {"order": "reversed"}
        return {}

    def _topup(self, user: str, pack: str, *, deliver: bool = True, method: str = "card",
               outcome: str = "succeeded") -> Purchase:
        r = self.api.create_topup(user, pack)
        self._check(r.status_code == 201, f"POST /v1/topups → {r.status_code} {r.text[:300]}")
        p = Purchase(r.json()["session_id"], user, pack=pack)
        self.purchases.append(p)
        paid = self.stripe.pay(p.session, method=method, outcome=outcome,
                               **({"deliver": False} if not deliver else self._delivery()))
        if not deliver:
            self.held.extend((self.op_index, ev) for ev in paid["events"])
        else:
            self._sent(paid)
        p.state = {"card": "paid"}.get(method) or {"pending": "pending", "succeeded": "paid"}.get(outcome, "failed")
        if p.state == "paid":
            p.charge_cents = int(rates.packs()[pack]["price"])
        self.log[-1] += f" {user} {pack} {p.session} {p.state}{'' if deliver else ' held'}"
        return p

    def _op_topup_card(self) -> None:
        self._topup(self.rng.choice(self.users), self.rng.choice(PACKS))

    def _op_topup_async(self) -> None:
        self._topup(self.rng.choice(self.users), self.rng.choice(PACKS), method="delayed",
                    outcome=self.rng.choice(("pending", "pending", "succeeded", "failed")))

    def _op_settle_async(self) -> None:
        pending = [p for p in self.purchases if p.state == "pending"]
        if not pending:
            return
        p = self.rng.choice(pending)
        outcome = self.rng.choice(("succeeded", "failed"))
        self._sent(self.stripe.settle(p.session, outcome, **self._delivery()))
        p.state = "paid" if outcome == "succeeded" else "failed"
        if p.state == "paid":
            p.charge_cents = int(rates.packs()[p.pack]["price"])  # type: ignore[index]
        self.log[-1] += f" {p.session} {outcome}"

    def _op_topup_held(self) -> None:
        """Paid, but Stripe's events are late: refunds/disputes may overtake them."""
        self._topup(self.rng.choice(self.users), self.rng.choice(PACKS), deliver=False)

    def _op_deliver_held(self) -> None:
        if self.held:
            k = self.rng.randint(1, len(self.held))
            batch, self.held = [ev for _, ev in self.held[:k]], self.held[k:]
            self.rng.shuffle(batch)
            self._deliver(batch)
            self.log[-1] += f" {len(batch)} events"

    def _op_redeliver(self) -> None:
        """Stripe delivers an event again (its retries): nothing moves twice."""
        if self.delivered:
            self._deliver([self.rng.choice(self.delivered)])

    def _op_topup_abandon(self) -> None:
        r = self.api.create_topup(self.rng.choice(self.users), self.rng.choice(PACKS))
        self._check(r.status_code == 201, f"POST /v1/topups → {r.status_code}")
        if self.rng.random() < 0.7:
            self._sent(self.stripe.expire(r.json()["session_id"]))

    def _charged(self) -> list[tuple[Purchase, str, int]]:
        """(purchase, Stripe target, cents) of every charge: paid packs and invoices."""
        out = [(p, p.session, p.charge_cents) for p in self.purchases if p.pack and p.state == "paid"]
        out += [(p, inv, cents) for p in self.purchases for inv, cents in p.invoices if cents > 0]
        return out

    def _op_refund(self) -> None:
        charged = self._charged()
        if not charged:
            return
        p, target, cents = self.rng.choice(charged)
        left = cents - sum(c for rid, c in p.refunds if rid.startswith(target + ":"))
        if left <= 0:
            return
        amount = None if self.rng.random() < 0.4 else self.rng.randint(1, left)
        res = self._sent(self.stripe.refund(target, amount, **self._delivery()))
        refund = next(e["data"]["object"] for e in res["events"] if e["type"] == "refund.created")
        rid = refund["id"]
        p.refunds.append((f"{target}:{rid}", refund["amount"]))
        self.log[-1] += f" {target} {refund['amount']}c {rid}"

    def _op_fail_refund(self) -> None:
        refunds = [(p, key) for p in self.purchases for key, _ in p.refunds]
        if not refunds:
            return
        p, key = self.rng.choice(refunds)
        rid = key.split(":", 1)[1]
        self._sent(self.stripe.fail_refund(rid, **self._delivery()))
        p.refunds = [(k, c) for k, c in p.refunds if k != key]
        self.log[-1] += f" {rid}"

    def _op_dispute(self) -> None:
        charged = self._charged()
        if not charged:
            return
        p, target, cents = self.rng.choice(charged)
        amount = None if self.rng.random() < 0.5 else self.rng.randint(1, cents)
        try:
            res = self._sent(self.stripe.dispute(target, amount, **self._delivery()))
        except StandInError as err:
            self.log[-1] += f" refused {err}"
            return
        self.disputes.append(res["object"]["id"])
        self.log[-1] += f" {target} {res['object']['amount']}c {res['object']['id']}"

    def _op_close_dispute(self) -> None:
        if self.disputes:
            did = self.disputes.pop(self.rng.randrange(len(self.disputes)))
            outcome = self.rng.choice(("won", "lost"))
            self._sent(self.stripe.close_dispute(did, outcome, **self._delivery()))
            self.log[-1] += f" {did} {outcome}"

    def _op_subscribe(self) -> None:
        user, plan = self.rng.choice(self.users), self.rng.choice(sorted(PLANS))
        r = self.api.http.post(f"{self.api.base}/v1/subscriptions", json={"user_id": user, "plan": plan},
                               timeout=30)
        self._check(r.status_code == 201, f"POST /v1/subscriptions → {r.status_code} {r.text[:300]}")
        p = Purchase(r.json()["session_id"], user, plan=plan, state="paid")
        self.purchases.append(p)
        paid = self._sent(self.stripe.pay(p.session, **self._delivery()))
        self._invoiced(p, paid)
        p.sub_id = next(e["data"]["object"]["id"] for e in paid["events"]
                        if e["type"] == "customer.subscription.created")
        self.log[-1] += f" {user} {plan} {p.sub_id}"

    def _invoiced(self, p: Purchase, result: dict[str, Any]) -> None:
        p.invoices += [(e["data"]["object"]["id"], e["data"]["object"]["amount_paid"])
                       for e in result["events"] if e["type"] == "invoice.paid"]

    def _op_renew(self) -> None:
        subs = [p for p in self.purchases if p.sub_id]
        if subs:
            p = self.rng.choice(subs)
            self._invoiced(p, self._sent(self.stripe.subscription(p.sub_id, "renew", **self._delivery())))
            self.log[-1] += f" {p.sub_id}"

    # ------------------------------------------------------------------ crashes
    def _kill(self, what: str) -> None:
        t0 = time.monotonic()
        self._kill_now(what)
        self.took[f"kill_{what}"] += time.monotonic() - t0

    def _kill_now(self, what: str) -> None:
        """SIGKILL ``what`` (its whole process group, or one pool process of the worker:
        whatever task it was running dies inside), then start what exited again."""
        self.counts[f"kill_{what}"] += 1
        name = "worker" if what.startswith("worker") else what
        child = self.stack.child(name)
        if what == "worker-task":
            pool = [pid for pid in _group(child.proc.pid) if pid != child.proc.pid]
            if pool:
                os.kill(self.rng.choice(sorted(pool)), signal.SIGKILL)
                self.log.append(f"SIGKILL a pool process of {name}")
                return  # Celery's main process replaces it
        os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait()
        self.log.append(f"SIGKILL {name}; restarted {self.stack.restart_exited()}")

    # ------------------------------------------------------------------ quiescence
    def quiesce(self, timeout_s: float = 90) -> float:
        """Deliver what is held back, stop jobs that would never end on their own, then
        wait until nothing moves: every job ended, every Stripe event handled, every
        RunPod job the stand-in accepted ended and every one we recorded settled."""
        started = time.monotonic()
        if self.held:
            self.log.append("deliver every held event")
            self._deliver([ev for _, ev in self.held])
            self.held = []
        while self.undelivered:  # as Stripe retries a failed delivery
            self._deliver([self.undelivered.pop()])
        for job in self.jobs.values():
            if job.emulator.get("never_finish") and not (job.cancel_asked or job.expire_asked) and \
                    rates.quote(job.type, job.params["duration_s"], job.params["resolution"],
                                job.params.get("scale")).max_gpu_seconds > 8:
                # Cancelled (its hold may not even be placed yet under load, so moving
                # its expiry could miss it).
                self.log.append(f"quiesce: stop never-finishing {job.id}")
                self._cancel(job)
        ours = list(self.jobs)
        nonces = {j.nonce for j in self.jobs.values()}

        def quiet() -> bool:
            with transaction(self.sessions) as s:
                open_jobs = s.scalar(select(func.count()).select_from(Job).where(
                    Job.id.in_(ours), Job.status.not_in(JobStatus.TERMINAL)))
                pending = s.scalar(select(func.count()).select_from(StripeEvent)
                                   .where(StripeEvent.status == EventStatus.RECEIVED))
                unsettled = s.scalar(select(func.count()).select_from(RunPodJob)  # strays: cancelled, time known
                                     .where(RunPodJob.role == "stray", RunPodJob.state == "open"))
            if os.environ.get("GPUBILL_SIM_DEBUG"):
                print(f"{time.monotonic() - started:5.1f} open jobs {open_jobs} events {pending} strays {unsettled}",
                      file=sys.stderr)
            if open_jobs or pending or unsettled:
                return False
            return all(r["state"] in RUNPOD_ENDED or r["deleted"] for r in runpod_jobs(self.cfg)
                       if r["input"].get("nonce") in nonces)
        try:
            wait_for(quiet, timeout_s, "quiescence")
        except AssertionError as err:
            raise self.fail(f"{err}: {self._stuck()}") from err
        return time.monotonic() - started

    def _stuck(self) -> str:
        with transaction(self.sessions) as s:
            jobs = s.execute(select(Job.id, Job.status, Job.runpod_job_id).where(
                Job.status.not_in(JobStatus.TERMINAL))).all()
            events = s.execute(select(StripeEvent.id, StripeEvent.type, StripeEvent.attempts).where(
                StripeEvent.status == EventStatus.RECEIVED)).all()
            rp = s.execute(select(RunPodJob.id, RunPodJob.job_id, RunPodJob.role)
                           .where(RunPodJob.role == "stray", RunPodJob.state == "open")).all()
        said = [line for j in jobs[:3] for line in self._logged(j[0])]
        kept = Path(tempfile.gettempdir()) / f"gpubill-sim-{self.seed}-logs"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(self.stack.log_dir, kept)
        said.append(f"(the stack's logs are kept in {kept})")
        return (f"open jobs {jobs[:10]}, unprocessed events {events[:10]}, unsettled RunPod jobs {rp[:10]}\n"
                + "\n".join(said))

    def _logged(self, needle: str, last: int = 25) -> list[str]:
        """The stack's log lines that mention ``needle`` (the last ``last``)."""
        found = []
        for path in sorted(self.stack.log_dir.glob("*.log")):
            with path.open(errors="replace") as f:
                found += [f"{path.stem}: {line.rstrip()[:400]}" for line in f if needle in line]
        return found[-last:]

    # ------------------------------------------------------------------ the oracle
    def verify(self) -> dict[str, Any]:
        """Ledger = model of the stand-ins' ground truth; invariants; reconcile; nothing
        parked. Returns counts for the test to print."""
        try:
            return self._verify()
        except SimulationFailure:
            raise
        except AssertionError as err:
            raise self.fail(str(err)) from err

    def _verify(self) -> dict[str, Any]:
        model = Model()
        truth_rp = [r for r in runpod_jobs(self.cfg) if str(r["input"].get("nonce", "")).startswith(self.tag)]
        by_nonce: dict[str, list[dict[str, Any]]] = {}
        for r in truth_rp:
            by_nonce.setdefault(r["input"]["nonce"], []).append(r)
        with transaction(self.sessions) as s:
            rows = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(list(self.jobs))))}
            recorded = {r.id: r for r in s.scalars(select(RunPodJob).where(RunPodJob.job_id.in_(list(self.jobs))))}
            balances = {w.user_id: w.balance for w in s.scalars(select(Wallet).where(Wallet.user_id.in_(self.users)))}
            parked = s.execute(select(StripeEvent.id, StripeEvent.type, StripeEvent.last_error)
                               .where(StripeEvent.status == EventStatus.FAILED)).all()
            violations = check(s) + gpu_violations(s)
            for j in rows.values():
                s.expunge(j)
        self._check(set(rows) == set(self.jobs), f"jobs accepted {len(self.jobs)} ≠ stored {len(rows)}")
        outcomes: Counter[str] = Counter()
        for sim in self.jobs.values():
            job, ran = rows[sim.id], by_nonce.get(sim.nonce, [])
            for r in ran:  # every GPU job RunPod accepted for ours is on our books
                self._check(r["id"] in recorded, f"job {sim.id}: RunPod job {r['id']} ({r['state']}, "
                                                 f"{r['executed_ms']} ms) unrecorded")
            end, ms = self._expected_end(sim, job, ran)
            outcomes[f"{job.status}"] += 1
            p = sim.params
            want = model.job(sim.id, sim.user, sim.type, p["duration_s"], p["resolution"], p.get("scale"),
                             end=end, execution_ms=ms)
            got = (job.hold_credits, job.charge or 0, job.released or 0)
            expect = (want.hold, want.charge, want.release) if job.hold_id else (job.hold_credits, 0, 0)
            self._check(got == expect, f"job {sim.id} {sim.type} {p} {sim.emulator} ended {job.status} "
                                       f"(RunPod: {[(r['state'], r['executed_ms']) for r in ran]}): "
                                       f"(hold, charge, released) = {got}, model {expect}")
        stripe_counts = self._stripe_into(model)
        want_bal = {u: model.balance(u) for u in self.users}
        got_bal = {u: balances.get(u, 0) for u in self.users}
        self._check(got_bal == want_bal, "wallets ≠ model: " + ", ".join(
            f"{u}: {got_bal[u]} vs {want_bal[u]}" for u in self.users if got_bal[u] != want_bal[u]))
        # charge.succeeded moves no money (it links a charge; the session's completion
        # links it too): it may park when the completion is held back past its retries.
        self._check([p for p in parked if p[1] != "charge.succeeded"] == [], f"parked Stripe events: {parked}")
        self._check(violations == [], "invariants: " + "\n".join(map(str, violations)))
        rc = subprocess.run([sys.executable, "-m", "gpubill.cli", "reconcile", "--no-record"],
                            env={**os.environ, **self.stack.env}, capture_output=True, text=True, timeout=120)
        self._check(rc.returncode == 0,
                    f"gpubill reconcile exit {rc.returncode}:\n{rc.stdout[-3000:]}{rc.stderr[-2000:]}")
        return {"seed": self.seed, "ops": self.ops + USERS, "jobs": len(self.jobs), "job_outcomes": dict(outcomes),
                "runpod_jobs": len(truth_rp), **stripe_counts, "operations": dict(self.counts),
                "seconds": {k: round(v, 1) for k, v in self.took.most_common()}}

    def _expected_end(self, sim: SimJob, job: Job, ran: list[dict[str, Any]]) -> tuple[str, int]:
        """The model's ``end`` for our job and the execution ms it is billed on, from the
        RunPod stand-in's ground truth of the RunPod job the ledger settled through.
        Where two endings are both correct (our stop raced RunPod finishing, RunPod
        forgot a job before we read it), the ledger's status picks one, and must be one
        the truth allows."""
        billed = [r for r in ran if r["id"] == job.runpod_job_id]
        st = job.status
        # A held job adopts only a RunPod id RunPod knows (a lost /run answer,
        # docs/runpod-boundary.md §3); a made-up id a callback names is a stray.
        self._check(job.runpod_job_id not in sim.forged_ids,
                    f"job {sim.id} adopted forged RunPod id {job.runpod_job_id}, ended {st}")
        if not billed:  # never reached RunPod (or only strays did)
            allowed = {JobStatus.REJECTED, JobStatus.FAILED}
            if sim.cancel_asked:
                allowed.add(JobStatus.CANCELLED)
            if sim.expire_asked:
                allowed.add(JobStatus.EXPIRED)
            self._check(st in allowed, f"job {sim.id} never ran on RunPod but ended {st} ({job.error})")
            return "refused", 0
        r = billed[0]
        state, ms = r["state"], r["executed_ms"]
        if st == JobStatus.LOST:
            self._check(r["deleted"], f"job {sim.id} lost but RunPod still has {r['id']} ({state})")
            return "failed", 0
        allowed_by_state = {"COMPLETED": {JobStatus.COMPLETED: "completed"},
                            "FAILED": {JobStatus.FAILED: "failed"},
                            "TIMED_OUT": {JobStatus.TIMED_OUT: "failed"},
                            "CANCELLED": ({JobStatus.CANCELLED: "cancelled"} if sim.cancel_asked else {})
                            | ({JobStatus.EXPIRED: "expired"} if sim.expire_asked else {})}
        allowed = allowed_by_state.get(state, {})
        self._check(st in allowed, f"job {sim.id} ended {st} ({job.error}) but RunPod says {state} "
                                   f"{ms} ms (cancel asked {sim.cancel_asked}, expiry {sim.expire_asked})")
        return allowed[st], ms

    def _stripe_into(self, model: Model) -> dict[str, int]:
        """Feed the model from the Stripe stand-in's ground truth: each pack session's
        charge (by its PaymentIntent), each subscription's invoices (by its customer),
        and every refund and dispute of those charges in its current status."""
        truth = requests.get(f"{self.cfg.stripe_api_base}/_control/ledger", timeout=30).json()
        auth = {"Authorization": f"Bearer {self.cfg.stripe_secret_key.get_secret_value()}"}
        charge_key: dict[str, str] = {}
        for p in self.purchases:
            session = requests.get(f"{self.cfg.stripe_api_base}/v1/checkout/sessions/{p.session}",
                                   headers=auth, timeout=30).json()
            if p.pack:
                for ch in truth["payments"]:
                    if ch["payment_intent"] == session.get("payment_intent") and ch["status"] == "succeeded":
                        model.topup(ch["id"], p.user, p.pack)
                        charge_key[ch["id"]] = ch["id"]
            else:
                for inv in truth["invoices"]:
                    if inv["customer"] != session.get("customer") or inv["status"] != "paid":
                        continue
                    for line in inv["lines"]:
                        model.invoice(p.user, line["price"], line["quantity"], invoice_id=inv["id"],
                                      cents=inv["amount_paid"])
                    if inv["charge"]:
                        charge_key[inv["charge"]] = inv["id"]
        refunds = [r for r in truth["refunds"] if r["charge"] in charge_key]
        disputes = [d for d in truth["disputes"] if d["charge"] in charge_key]
        for r in refunds:
            model.reversal(charge_key[r["charge"]], r["id"], "refund", r["amount"], r["status"])
        for d in disputes:
            model.reversal(charge_key[d["charge"]], d["id"], "dispute", d["amount"], d["status"])
        return {"charges": len(charge_key), "refunds": len(refunds), "disputes": len(disputes)}

    def close(self) -> None:
        self.api.http.close()
        self.sessions.kw["bind"].dispose()


def _group(pgid: int) -> list[int]:
    """Process ids in process group ``pgid`` (Linux ``/proc``)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry))
    return found
