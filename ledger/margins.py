"""Margin report: what GPU jobs earned (credits at list price, 1 credit = $0.01) against
what RunPod cost us, grouped by job type, GPU or day — in two figures: ``runpod_cost_usd``
(``executionTime``, the GPU time users paid for) and ``runpod_billed_usd`` (RunPod's bill:
cold-start share of ``delayTime`` + ``executionTime``, per second rounded up).

A job counts once RunPod reported its GPU time (``execution_ms`` recorded at its first
terminal status): completed jobs earn their charge; failed, timed-out and lost jobs that
ran earn nothing but still cost — so their negative margin shows.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.models import Job

GROUPS = ("type", "gpu", "day")
USD_PER_CREDIT = Decimal("0.01")
_MICRO, _CENT, _TENTH = Decimal("0.000001"), Decimal("0.01"), Decimal("0.1")


@dataclass(frozen=True, slots=True)
class MarginRow:
    """One group (or the total, ``key="total"``). Money: credits (int) and USD (Decimal);
    GPU-seconds (Decimal); ``margin_pct`` None when nothing was earned."""

    key: str
    jobs: int
    gpu_seconds: Decimal
    credits: int
    revenue_usd: Decimal
    runpod_cost_usd: Decimal
    margin_pct: Decimal | None
    runpod_billed_usd: Decimal = Decimal(0)
    billed_margin_pct: Decimal | None = None

    @property
    def margin_usd(self) -> Decimal:
        return self.revenue_usd - self.runpod_cost_usd


def _pct(revenue: Decimal, cost: Decimal) -> Decimal | None:
    return ((revenue - cost) / revenue * 100).quantize(_TENTH) if revenue else None


def _row(key: str, jobs: int, execution_ms: int, credits: int, cost: Decimal,
         billed: Decimal) -> MarginRow:
    revenue = (credits * USD_PER_CREDIT).quantize(_CENT)
    # Sums of NUMERIC on SQLite come back as floats: round once, to the column's scale.
    cost, billed = Decimal(cost).quantize(_MICRO), Decimal(billed).quantize(_MICRO)
    return MarginRow(key, jobs, Decimal(execution_ms) / 1000, credits, revenue, cost,
                     _pct(revenue, cost), billed, _pct(revenue, billed))


def margins(s: Session, *, by: str = "type", since: datetime | None = None) -> list[MarginRow]:
    """One row per group (sorted by key) and a last ``total`` row, over jobs finished at
    or after ``since`` (naive UTC; None = all). Raises ``ValueError`` for an unknown
    ``by`` (one of ``GROUPS``)."""
    if by not in GROUPS:
        raise ValueError(f"group by one of {', '.join(GROUPS)}")
    key = {"type": Job.type, "gpu": Job.gpu, "day": func.date(Job.finished_at)}[by]
    q = (select(key, func.count(), func.coalesce(func.sum(Job.execution_ms), 0),
                func.coalesce(func.sum(Job.charge), 0),
                func.coalesce(func.sum(Job.runpod_cost_usd), 0),
                func.coalesce(func.sum(Job.runpod_billed_usd), 0))
         .where(Job.execution_ms.is_not(None), Job.finished_at.is_not(None))
         .group_by(key).order_by(key))
    if since is not None:
        q = q.where(Job.finished_at >= since)
    rows = [_row(str(k), n, int(ms), int(c), cost, billed)
            for k, n, ms, c, cost, billed in s.execute(q)]
    total = _row("total", sum(r.jobs for r in rows),
                 sum(int(r.gpu_seconds * 1000) for r in rows), sum(r.credits for r in rows),
                 sum((r.runpod_cost_usd for r in rows), Decimal(0)),
                 sum((r.runpod_billed_usd for r in rows), Decimal(0)))
    return [*rows, total]
