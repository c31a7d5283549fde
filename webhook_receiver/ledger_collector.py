"""Money and backlog gauges computed from the ledger at scrape time.

The ledger is the truth, so these are not counters kept in process memory: each scrape
runs a handful of aggregate queries (GROUP BY over indexed status columns) in one
read transaction. If the database is unreachable the scrape still succeeds with
``gpubill_ledger_up 0``.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from ledger.db import transaction
from ledger.models import (
    Account,
    EventStatus,
    Hold,
    HoldStatus,
    Job,
    JobStatus,
    LedgerTransaction,
    Posting,
    StripeEvent,
    utcnow,
)
from ledger.reconcile import MONEY_EVENTS

log = logging.getLogger(__name__)

# Ledger transaction kind → flow label of gpubill_credits_total.
FLOWS = {"topup": "topped_up", "capture": "captured", "clawback": "clawed_back"}
JOB_STATES = (JobStatus.REQUESTED, JobStatus.HELD, *JobStatus.RUNNING, *JobStatus.TERMINAL)


class LedgerCollector(Collector):
    """Prometheus collector over the ledger database behind ``sessions``."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        up = GaugeMetricFamily("gpubill_ledger_up", "1 if the ledger database answered this scrape.")
        try:
            families = self._families()
        except Exception:  # any driver error: report it, never fail the scrape
            log.warning("ledger metrics unavailable", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        with transaction(self.sessions) as s:
            read = _read(s)
        return [*_job_families(read), _credit_family(read), *_backlog_families(read)]


@dataclass
class _Reading:
    """One scrape's aggregates: job counts by status; open holds (count, credits); wallet
    credits by transaction kind as (kind, in, out); unreleased credits of ended holds by
    status; Stripe events not processed (count, oldest ``received_at``); events not
    applied by status; ``utcnow()`` when read."""

    jobs: dict[str, int]
    open_count: int
    open_credits: int
    by_kind: list[Any]
    ended: dict[str, int]
    unprocessed: int
    oldest: datetime | None
    not_applied: dict[str, int]
    now: datetime


def _read(s: Session) -> _Reading:
    """Run the scrape's aggregate queries in session ``s`` (one read transaction)."""
    jobs = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    open_count, open_credits = s.execute(
        select(func.count(), func.coalesce(func.sum(Hold.amount), 0))
        .where(Hold.status == HoldStatus.OPEN)).one()
    # Wallet legs only, split by sign: an ``adjust`` can go either way, and a
    # counter must never decrease, so each direction is its own series.
    by_kind = s.execute(
        select(LedgerTransaction.kind,
               func.coalesce(func.sum(case((Posting.amount > 0, Posting.amount), else_=0)), 0),
               func.coalesce(func.sum(case((Posting.amount < 0, -Posting.amount), else_=0)), 0))
        .join(Posting, Posting.transaction_id == LedgerTransaction.id)
        .join(Account, Account.id == Posting.account_id)
        .where(Account.kind == "wallet")
        .group_by(LedgerTransaction.kind)).all()
    ended = dict(s.execute(select(Hold.status, func.sum(Hold.amount - Hold.captured))
                           .where(Hold.status != HoldStatus.OPEN).group_by(Hold.status)).all())
    unprocessed, oldest = s.execute(
        select(func.count(), func.min(StripeEvent.received_at))
        .where(StripeEvent.status == EventStatus.RECEIVED)).one()
    not_applied = dict(s.execute(
        select(StripeEvent.status, func.count())
        .where(or_(StripeEvent.status == EventStatus.WRONG_MODE,
                   and_(StripeEvent.status == EventStatus.FAILED,
                        StripeEvent.type.in_(MONEY_EVENTS))))
        .group_by(StripeEvent.status)).all())
    return _Reading(jobs, open_count, open_credits, list(by_kind), ended, unprocessed, oldest,
                    not_applied, utcnow())


def _job_families(read: _Reading) -> list[GaugeMetricFamily]:
    """``gpubill_jobs{state}``, ``gpubill_open_holds``, ``gpubill_open_hold_credits``."""
    jobs = read.jobs
    by_state = GaugeMetricFamily("gpubill_jobs", "Jobs by lifecycle state.", labels=["state"])
    for state in (*JOB_STATES, *sorted(set(jobs) - set(JOB_STATES))):
        by_state.add_metric([state], jobs.get(state, 0))

    holds = GaugeMetricFamily("gpubill_open_holds", "Open holds (pending transfers).")
    holds.add_metric([], read.open_count)
    held = GaugeMetricFamily("gpubill_open_hold_credits", "Credits reserved by open holds.")
    held.add_metric([], int(read.open_credits))
    return [by_state, holds, held]


def _credit_family(read: _Reading) -> CounterMetricFamily:
    """``gpubill_credits_total{flow, direction}`` in credits."""
    credits = CounterMetricFamily(
        "gpubill_credits", "Credits moved since the ledger began, by flow (ledger transaction "
        "kinds: topped_up, captured, clawed_back, adjust, ...; hold ends: released, expired) and "
        "direction (in: to user wallets or back to their available credits; out: from them).",
        labels=["flow", "direction"])
    flows: dict[tuple[str, str], int] = {}
    for kind, into, out_of in read.by_kind:
        flow = FLOWS.get(kind, kind)
        flows[(flow, "in")] = flows.get((flow, "in"), 0) + int(into)
        flows[(flow, "out")] = flows.get((flow, "out"), 0) + int(out_of)
    ended = read.ended
    flows[("released", "in")] = (int(ended.get(HoldStatus.CAPTURED) or 0)
                                 + int(ended.get(HoldStatus.RELEASED) or 0))
    flows[("expired", "in")] = int(ended.get(HoldStatus.EXPIRED) or 0)
    for key in (("topped_up", "in"), ("captured", "out"), ("clawed_back", "out")):
        flows.setdefault(key, 0)
    for (flow, direction), amount in sorted(flows.items()):
        credits.add_metric([flow, direction], amount)
    return credits


def _backlog_families(read: _Reading) -> list[GaugeMetricFamily]:
    """``gpubill_outbox_backlog{kind}``, the oldest unprocessed Stripe event's age (s) and
    ``gpubill_stripe_events_not_applied{reason}``."""
    backlog = GaugeMetricFamily(
        "gpubill_outbox_backlog", "Committed rows whose task has not moved them on yet.",
        labels=["kind"])
    backlog.add_metric(["job_requested"], read.jobs.get(JobStatus.REQUESTED, 0))
    backlog.add_metric(["job_held"], read.jobs.get(JobStatus.HELD, 0))
    backlog.add_metric(["stripe_event"], read.unprocessed)

    age = GaugeMetricFamily("gpubill_stripe_oldest_unprocessed_event_age_seconds",
                            "Age of the oldest Stripe event not yet processed; 0 if none.")
    oldest = read.oldest
    age.add_metric([], max(0.0, (read.now - oldest).total_seconds()) if oldest is not None else 0.0)
    # Issue 12: what reconcile reports as "events parked or in the wrong mode", as a gauge
    # to alert on (0 when healthy).
    stuck = GaugeMetricFamily(
        "gpubill_stripe_events_not_applied",
        "Stripe events that will not reach the ledger by themselves: parked events of a "
        "money-moving type (reason=parked) and events whose livemode differs from the "
        "deployment's (reason=wrong_mode).", labels=["reason"])
    stuck.add_metric(["parked"], read.not_applied.get(EventStatus.FAILED, 0))
    stuck.add_metric(["wrong_mode"], read.not_applied.get(EventStatus.WRONG_MODE, 0))
    return [backlog, age, stuck]
