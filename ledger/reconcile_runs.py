"""Recorded reconciliation runs (``reconcile_runs``): the CLI's and the nightly one.

The nightly run is idempotent and self-locking: its ``run_key`` (``nightly:{date}``) is
unique, so a redelivered or duplicated task finds the day's run done and does nothing,
and a DB lease (``ledger.locks``) keeps two workers from reconciling at once.
"""
from __future__ import annotations

import logging
import os
import socket
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ledger import locks
from ledger.db import transaction
from ledger.models import ReconcileRun, utcnow
from ledger.reconcile import Progress, Report, run_checks, snapshot

log = logging.getLogger(__name__)

LOCK = "reconcile"
RUNNING, CLEAN, VIOLATIONS, FAILED = "running", "clean", "violations", "failed"


def nightly_key(day: date) -> str:
    return f"nightly:{day.isoformat()}"


def _done(factory: sessionmaker[Session], run_key: str) -> bool:
    with transaction(factory) as s:
        return s.scalar(select(ReconcileRun.status).where(ReconcileRun.run_key == run_key)) in (
            CLEAN, VIOLATIONS)


def _start(factory: sessionmaker[Session], trigger: str, run_key: str | None) -> int | None:
    """Insert (or, after a crash, restart) the run row; None if ``run_key`` already ran."""
    with transaction(factory) as s:
        run = None
        if run_key is not None:
            run = s.scalars(select(ReconcileRun).where(ReconcileRun.run_key == run_key)).one_or_none()
            if run is not None and run.status in (CLEAN, VIOLATIONS):
                return None
        if run is None:
            run = ReconcileRun(run_key=run_key, trigger=trigger)
            s.add(run)
        run.status, run.started_at, run.finished_at = RUNNING, utcnow(), None
        s.flush()
        return run.id


def _finish(factory: sessionmaker[Session], run_id: int, status: str, report: Report | None,
            error: str | None = None) -> None:
    with transaction(factory) as s:
        run = s.get(ReconcileRun, run_id)
        assert run is not None
        run.status, run.finished_at = status, utcnow()
        if report is not None:
            run.violations, run.summary = len(report.violations), report.summary()
        else:
            run.summary = {"error": (error or "")[:2000]}


def record(factory: sessionmaker[Session], *, trigger: str, run_key: str | None = None,
           progress: Progress = lambda n: None) -> tuple[int, Report] | None:
    """Run every check in one snapshot and record the run. Returns (run id, report), or
    None when ``run_key`` was already reconciled. A crash is recorded ``failed`` and
    re-raised."""
    run_id = _start(factory, trigger, run_key)
    if run_id is None:
        return None
    try:
        with snapshot(factory) as s:
            report = run_checks(s, progress)
    except Exception as exc:
        _finish(factory, run_id, FAILED, None, f"{type(exc).__name__}: {exc}")
        raise
    _finish(factory, run_id, VIOLATIONS if report.violations else CLEAN, report)
    return run_id, report


def nightly(factory: sessionmaker[Session], run_key: str, lease_s: float) -> str:
    """The scheduled reconciliation under the ``reconcile`` lease. Returns what happened:
    ``locked`` (another run holds the lease), ``done`` (``run_key`` already ran),
    ``clean`` or ``violations``."""
    if _done(factory, run_key):
        return "done"
    holder = f"{socket.gethostname()}:{os.getpid()}:{run_key}"
    if not locks.acquire(factory, LOCK, holder, lease_s):
        return "locked"
    try:
        outcome = record(factory, trigger="beat", run_key=run_key)
    finally:
        locks.release(factory, LOCK, holder)
    if outcome is None:
        return "done"
    run_id, report = outcome
    if report.violations:
        log.error("reconcile run %s (%s): %d violation(s); first: %s", run_id, run_key,
                  len(report.violations), report.violations[0])
        return VIOLATIONS
    return CLEAN
