"""Reconciliation: every invariant of docs/architecture.md over the whole ledger, plus Stripe-side
consistency, with a per-check summary; the nightly run is recorded in ``reconcile_runs``.

Checks marked ``@keyed`` run chunk by chunk over their subject's key (``CHUNK`` keys per
statement), so a large ledger never needs one huge statement and a progress callback
can advance as chunks finish. Everything runs in one read transaction — a REPEATABLE
READ snapshot on PostgreSQL — so every check sees the same ledger while money moves.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, true
from sqlalchemy.orm import Session, sessionmaker

from ledger.invariants import CHECKS, Violation, keyed
from ledger.jobs import PARKED, POISON_CANCELLED, job_quote
from ledger.models import (
    EventStatus,
    Job,
    JobStatus,
    LedgerTransaction,
    Reversal,
    ReversalStatus,
    RunPodJob,
    StripeEvent,
    Topup,
    TopupStatus,
    utcnow,
)
from ledger.topups import share
from pricing import charge

CHUNK = 5_000
STRAY_GRACE = timedelta(minutes=10)  # a stray's cancel (with retries) is done by then
SAMPLE = 100  # violations kept in a recorded summary

Progress = Callable[[int], None]

PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


@keyed(StripeEvent.id, "paid sessions credited (stripe)")
def _paid_sessions_credited(s: Session, within: ColumnElement[bool]) -> list[Violation]:
    """Every processed paid-session event of a pack (``mode=payment``) has its top-up
    credited by exactly one ``topup`` transaction of the top-up's credits to its user."""
    out: list[Violation] = []
    events = s.execute(select(StripeEvent.id, StripeEvent.payload).where(
        within, StripeEvent.type.in_(PAID_EVENTS), StripeEvent.status == "processed")).all()
    sessions: dict[str, str] = {}
    for event_id, payload in events:
        try:
            obj = json.loads(payload)["data"]["object"]
        except (ValueError, KeyError, TypeError):
            out.append(Violation(5, f"stripe event {event_id}", "processed, but its payload is unreadable"))
            continue
        # A mode=subscription session credits nothing itself: its invoices do (each a
        # top-up row of its own, ``ledger.topups.grant_invoice``), checked by the rest.
        if obj.get("payment_status") == "paid" and obj.get("id") and obj.get("mode") != "subscription":
            sessions[obj["id"]] = event_id
    if not sessions:
        return out
    credited = dict(s.execute(select(LedgerTransaction.ref, func.count()).where(
        LedgerTransaction.kind == "topup", LedgerTransaction.ref.in_(sessions))
        .group_by(LedgerTransaction.ref)).all())
    topups = {t.checkout_session_id: t for t in s.scalars(
        select(Topup).where(Topup.checkout_session_id.in_(sessions)))}
    for sid, event_id in sessions.items():
        topup, n = topups.get(sid), credited.get(sid, 0)
        if topup is None or topup.status != TopupStatus.CREDITED or n != 1:
            state = topup.status if topup is not None else "no top-up row"
            out.append(Violation(5, f"checkout session {sid}",
                                 f"paid ({event_id}) but {state}, {n} top-up transactions"))
    return out


# A function attribute that the runner reads (raw payloads: smaller chunks).
_paid_sessions_credited.chunk = 500  # type: ignore[attr-defined]  # set on a plain function


# Event types whose handler moves money (credit, grant, claw-back, restore) or links the
# payment a later claw-back needs: parked, they leave the ledger short of what Stripe did.
MONEY_EVENTS = (*PAID_EVENTS, "charge.refunded", "refund.created", "refund.updated", "refund.failed",
                "charge.refund.updated", "charge.dispute.created", "charge.dispute.funds_withdrawn",
                "charge.dispute.funds_reinstated", "charge.dispute.closed", "invoice.paid",
                "invoice_payment.paid")


@keyed(StripeEvent.id, "events parked or in the wrong mode (stripe)")
def _events_not_applied(s: Session, within: ColumnElement[bool]) -> list[Violation]:
    """Stripe events that did not reach the ledger and never will by themselves (issue
    12): one whose ``livemode`` differs from the deployment's (``wrong_mode``, a
    misconfigured key or endpoint), and a parked (``failed``) event of a type that moves
    money. Each is named with its reason; ``gpubill events replay`` re-applies a parked one."""
    rows = s.execute(select(StripeEvent.id, StripeEvent.type, StripeEvent.status, StripeEvent.last_error)
                     .where(within, or_(StripeEvent.status == EventStatus.WRONG_MODE,
                                        and_(StripeEvent.status == EventStatus.FAILED,
                                             StripeEvent.type.in_(MONEY_EVENTS)))))
    wrong = "in the wrong mode (livemode differs from the deployment)"
    return [Violation(5, f"stripe event {eid}",
                      f"{etype} {wrong if status == EventStatus.WRONG_MODE else 'parked'}: {(error or '')[:200]}")
            for eid, etype, status, error in rows]


@keyed(Topup.id, "top-up credits match (stripe)")
def _topup_amounts(s: Session, within: ColumnElement[bool]) -> list[Violation]:
    """A credited top-up's transaction moved exactly its credits to its user."""
    rows = s.execute(
        select(Topup.checkout_session_id, Topup.user_id, Topup.credits,
               LedgerTransaction.user_id, LedgerTransaction.amount)
        .join(LedgerTransaction, and_(LedgerTransaction.kind == "topup",
                                      LedgerTransaction.ref == Topup.checkout_session_id))
        .where(within, or_(LedgerTransaction.amount != Topup.credits,
                           LedgerTransaction.user_id != Topup.user_id)))
    return [Violation(5, f"checkout session {sid}",
                      f"top-up of {credits} for {user} posted as {amount} for {tx_user}")
            for sid, user, credits, tx_user, amount in rows]


@keyed(Reversal.id, "refunds clawed back once (stripe)")
def _reversals_clawed_once(s: Session, within: ColumnElement[bool]) -> list[Violation]:
    """Each refund/dispute has at most one claw-back and one restore transaction (that
    they net to its recorded ``clawed`` is invariant 5's ``_reversals``)."""
    n_claw = func.count(LedgerTransaction.id).filter(LedgerTransaction.kind == "clawback")
    n_restore = func.count(LedgerTransaction.id).filter(LedgerTransaction.kind == "restore")
    rows = s.execute(
        select(Reversal.id, n_claw, n_restore)
        .join(LedgerTransaction, and_(LedgerTransaction.ref == Reversal.id,
                                      LedgerTransaction.kind.in_(("clawback", "restore"))))
        .where(within).group_by(Reversal.id).having(or_(n_claw > 1, n_restore > 1)))
    return [Violation(5, f"reversal {rid}", f"{c} claw-backs and {r} restores") for rid, c, r in rows]


@keyed(Topup.id, "top-up claw-backs = refunded share (stripe)")
def _topup_clawed_share(s: Session, within: ColumnElement[bool]) -> list[Violation]:
    """Credits clawed back over a top-up's reversals equal the share Stripe took back."""
    rows = s.execute(
        select(Topup.checkout_session_id, Topup.credits, Topup.amount_total, Reversal.status,
               Reversal.amount, Reversal.clawed)
        .join(Reversal, Reversal.topup_id == Topup.id).where(within).order_by(Topup.id)).all()
    per: dict[str, list[Any]] = {}
    for sid, credits, total, status, amount, clawed in rows:
        acc = per.setdefault(sid, [credits, total, 0, 0])
        acc[2] += amount if status in ReversalStatus.TAKEN else 0
        acc[3] += clawed
    return [Violation(5, f"checkout session {sid}",
                      f"Stripe took {taken} cents back → {share(credits, total, taken)} credits, "
                      f"{clawed} clawed back")
            for sid, (credits, total, taken, clawed) in per.items()
            if share(credits, total, taken) != clawed]


@keyed(Job.id, "GPU time conserved (runpod)")
def _gpu_time_conserved(s: Session, within: ColumnElement[bool]) -> list[Violation]:
    """Per job (issue 11, docs/runpod-boundary.md): the RunPod job it records is in
    ``runpod_jobs`` as its one billed RunPod job; a completed job was charged the rate
    card's price of its measured ``executionTime`` (clamped to min charge and hold) and
    released the rest; every other RunPod id received for it is a stray that was
    cancelled and its measured time written off (settled) — one still open after
    ``STRAY_GRACE`` is GPU time nobody accounted for."""
    out: list[Violation] = []
    jobs = s.scalars(select(Job).where(within, Job.runpod_job_id.is_not(None))).all()
    billed: dict[str, list[str]] = {}
    for rid, jid in s.execute(select(RunPodJob.id, RunPodJob.job_id).join(Job, Job.id == RunPodJob.job_id)
                              .where(within, RunPodJob.role == "billed")):
        billed.setdefault(jid, []).append(rid)
    for job in jobs:
        if billed.get(job.id) != [job.runpod_job_id]:
            out.append(Violation(6, f"job {job.id}", f"RunPod job {job.runpod_job_id} recorded, "
                                 f"billed rows {billed.get(job.id, [])}"))
        if job.status == "completed" and job.execution_ms is not None and job.hold_id is not None:
            due = charge(job_quote(job), job.execution_ms)
            if (job.charge, job.released) != (due, job.hold_credits - due):
                out.append(Violation(6, f"job {job.id}", f"{job.execution_ms} ms executed → {due} "
                                     f"credits, charged {job.charge}, released {job.released}"))
    stale = utcnow() - STRAY_GRACE
    for rid, jid, state, ms, status, at in s.execute(
            select(RunPodJob.id, RunPodJob.job_id, RunPodJob.state, RunPodJob.execution_ms,
                   RunPodJob.runpod_status, RunPodJob.recorded_at)
            .join(Job, Job.id == RunPodJob.job_id).where(within, RunPodJob.role == "stray")):
        if state == "open" and at < stale:
            out.append(Violation(6, f"job {jid}", f"stray RunPod job {rid} not cancelled/written off"))
        elif state == "settled" and ms is None and status != "404":
            out.append(Violation(6, f"job {jid}", f"stray RunPod job {rid} {status} without executionTime"))
    return out


@keyed(Job.id, "poison jobs (runpod)")
def _poison_jobs(s: Session, within: ColumnElement[bool]) -> list[Violation]:
    """Jobs a task could not load or process (issue 11, ``services.poison``): each parked
    job (``failed``, flagged, error kept, hold released) is reported for operators, and
    so is one still failing and not yet parked."""
    out: list[Violation] = []
    for jid, status, failures, error in s.execute(
            select(Job.id, Job.status, Job.task_failures, Job.error)
            .where(within, Job.task_failures > 0, or_(
                Job.status.not_in(JobStatus.TERMINAL), Job.error.like(f"{PARKED}%"),
                Job.error.like(f"%{POISON_CANCELLED}%")))):
        state = "parked" if status in JobStatus.TERMINAL else f"{status}, not parked yet"
        out.append(Violation(6, f"job {jid}", f"poison job ({state}) after {failures} failed "
                             f"task attempts: {(error or '')[:200]}"))
    return out


def poison_checks() -> tuple[Callable[..., list[Violation]], ...]:
    """Operator reports on jobs no task could process (not money invariants)."""
    return (_poison_jobs,)


def gpu_checks() -> tuple[Callable[..., list[Violation]], ...]:
    """RunPod-side conservation checks (same shape as ``ledger.invariants.CHECKS``)."""
    return (_gpu_time_conserved,)


def gpu_violations(s: Session) -> list[Violation]:
    """Every RunPod conservation violation over the whole database."""
    return [v for c in gpu_checks() for v in c(s, true())]


def stripe_checks() -> tuple[Callable[..., list[Violation]], ...]:
    """Stripe-side consistency checks (same shape as ``ledger.invariants.CHECKS``)."""
    return (_paid_sessions_credited, _topup_amounts, _reversals_clawed_once, _topup_clawed_share,
            _events_not_applied)


@dataclass
class CheckResult:
    """One summary row: ``examined`` subject rows (None for a check run whole)."""

    name: str
    examined: int | None
    violations: list[Violation] = field(default_factory=list)


@dataclass
class Report:
    results: list[CheckResult]

    @property
    def violations(self) -> list[Violation]:
        return [v for r in self.results for v in r.violations]

    def summary(self) -> dict[str, Any]:
        """JSON-able: per-check rows, the violation count and the first ``SAMPLE``."""
        found = self.violations
        return {"checks": [{"name": r.name, "examined": r.examined, "violations": len(r.violations)}
                           for r in self.results],
                "violations": len(found), "sample": [str(v) for v in found[:SAMPLE]]}


def all_checks() -> tuple[Callable[..., list[Violation]], ...]:
    return (*CHECKS, *stripe_checks(), *gpu_checks(), *poison_checks())


def check_name(check: Callable[..., list[Violation]]) -> str:
    return getattr(check, "check_name", check.__name__.strip("_").replace("_", " "))


def _domain(check: Callable[..., list[Violation]]) -> Any:
    key = getattr(check, "key", None)
    return None if key is None else select(key).where(key.is_not(None)).distinct()


def work(s: Session) -> int:
    """Progress units of a full run: subject keys of the keyed checks, 1 per other check."""
    total = 0
    for check in all_checks():
        dom = _domain(check)
        total += 1 if dom is None else s.execute(select(func.count()).select_from(dom.subquery())).scalar_one()
    return total


def _chunks(s: Session, key: Any, size: int) -> Iterator[tuple[ColumnElement[bool], int]]:
    """(condition selecting the next ``size`` distinct key values, how many) until done."""
    lo = None
    while True:
        q = select(key).where(key.is_not(None)).distinct().order_by(key).limit(size)
        keys = s.scalars(q if lo is None else q.where(key > lo)).all()
        if not keys:
            return
        yield (key <= keys[-1] if lo is None else and_(key > lo, key <= keys[-1])), len(keys)
        lo = keys[-1]
        if len(keys) < size:
            return


def run_checks(s: Session, progress: Progress = lambda n: None, chunk: int = CHUNK) -> Report:
    """Run every check (invariants 1–6, then Stripe-side) in session ``s``; ``progress(n)``
    is called as ``n`` more units of ``work(s)`` are done."""
    results: list[CheckResult] = []
    for check in all_checks():
        key = getattr(check, "key", None)
        if key is None:
            results.append(CheckResult(check_name(check), None, check(s)))
            progress(1)
            continue
        result = CheckResult(check_name(check), 0)
        for within, n in _chunks(s, key, min(chunk, getattr(check, "chunk", chunk))):
            result.violations += check(s, within)
            result.examined = (result.examined or 0) + n
            progress(n)
        results.append(result)
    return Report(results)


@contextmanager
def snapshot(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A read-only session over one consistent snapshot (rolled back at the end)."""
    with factory() as s:
        if s.get_bind().dialect.name == "postgresql":
            s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        try:
            yield s
        finally:
            s.rollback()
