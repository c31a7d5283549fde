"""Reconciliation: every invariant of docs/architecture.md over the whole ledger, plus Stripe-side
consistency, with a per-check summary; the nightly run is recorded in ``reconcile_runs``.
The Stripe-side checks are in ``ledger.stripe_checks``, the RunPod-side ones in
``ledger.gpu_checks``; this module runs them all.

Checks marked ``@keyed`` run chunk by chunk over their subject's key (``CHUNK`` keys per
statement), so a large ledger never needs one huge statement and a progress callback
can advance as chunks finish. Everything runs in one read transaction — a REPEATABLE
READ snapshot on PostgreSQL — so every check sees the same ledger while money moves.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session, sessionmaker

from ledger.gpu_checks import STRAY_GRACE, gpu_checks, gpu_violations, poison_checks
from ledger.invariants import CHECKS, Violation
from ledger.stripe_checks import MONEY_EVENTS, PAID_EVENTS, stripe_checks

__all__ = ["CHUNK", "MONEY_EVENTS", "PAID_EVENTS", "SAMPLE", "STRAY_GRACE", "CheckResult", "Progress",
           "Report", "all_checks", "check_name", "gpu_checks", "gpu_violations", "poison_checks",
           "run_checks", "snapshot", "stripe_checks", "work"]

CHUNK = 5_000
SAMPLE = 100  # violations kept in a recorded summary

Progress = Callable[[int], None]


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
