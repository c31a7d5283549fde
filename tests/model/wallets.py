"""Reference wallets: every wallet's balance from the outside world's inputs alone.

Inputs are what Stripe and RunPod (their stand-ins) say happened, never ledger columns:
paid top-ups (pack id), refunds and disputes against a top-up (cents, final state),
paid subscription invoices (Price id × quantity) and jobs (type, params, and how they
ended with the executionTime RunPod reported). Each method returns the credits it moved.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from tests.model import rates

# Reversal states in which Stripe holds the money (decisions.md: active refunds,
# withdrawn or lost disputes). Stripe's own dispute statuses say "withdrawn" as
# ``needs_response`` / ``under_review`` (funds are withdrawn when a non-inquiry dispute
# opens; https://docs.stripe.com/disputes/how-disputes-work), as the stand-in reports them.
TAKEN = {"refund": {"pending", "succeeded"},
         "dispute": {"withdrawn", "needs_response", "under_review", "lost"}}


@dataclass
class _Topup:
    user: str
    credits: int
    cents: int
    reversals: dict[str, tuple[str, int, str]] = field(default_factory=dict)


@dataclass
class JobOutcome:
    """What the model expects of one job: ``charge`` captured, ``release`` returned."""

    hold: int
    charge: int

    @property
    def release(self) -> int:
        return self.hold - self.charge


class Model:
    """Balances, job charges and releases computed from the rate card and pack data."""

    def __init__(self, rc: dict | None = None) -> None:
        self.rc = rc or rates.card()
        self._packs = rates.packs()
        self._plans = rates.plans_by_price()
        self._topups: dict[str, _Topup] = {}
        self._granted: defaultdict[str, int] = defaultdict(int)
        self._spent: defaultdict[str, int] = defaultdict(int)
        self.jobs: dict[str, JobOutcome] = {}

    def topup(self, topup_id: str, user: str, pack: str) -> int:
        p = self._packs[pack]
        self._topups[topup_id] = _Topup(user, int(p["credits"]), int(p["price"]))
        return int(p["credits"])

    def reversal(self, topup_id: str, rid: str, kind: str, cents: int, state: str) -> None:
        """Record refund/dispute ``rid`` of ``cents`` in its latest Stripe state."""
        self._topups[topup_id].reversals[rid] = (kind, cents, state)

    def invoice(self, user: str, price_id: str, quantity: int = 1, *,
                invoice_id: str | None = None, cents: int | None = None) -> int:
        """A paid full-period invoice: the plan's credits × ``quantity``. With
        ``invoice_id`` and ``cents`` (its amount paid) it can be refunded or disputed
        like a top-up (``reversal(invoice_id, …)``)."""
        credits = int(self._plans[price_id]["credits"]) * quantity
        if invoice_id is not None and cents is not None:
            self._topups[invoice_id] = _Topup(user, credits, cents)
        else:
            self._granted[user] += credits
        return credits

    def job(self, job_id: str, user: str, job_type: str, duration_s: object,
            resolution: str = "1080p", scale: int | None = None, *, end: str,
            execution_ms: int = 0) -> JobOutcome:
        """``end``: completed | failed | cancelled | expired | refused (never held)."""
        q = rates.quote(job_type, duration_s, resolution, scale, self.rc)
        if end == "completed":
            c = rates.charge(q, execution_ms)
        elif end == "cancelled":
            c = rates.cancel_charge(q, execution_ms)
        else:  # failed on RunPod, expired, timed out before running: released whole
            c = 0
        out = self.jobs[job_id] = JobOutcome(q.hold, c)
        self._spent[user] += c
        return out

    def clawed(self, topup_id: str) -> int:
        t = self._topups[topup_id]
        taken = sum(c for kind, c, st in t.reversals.values() if st in TAKEN[kind])
        return rates.share(t.credits, t.cents, taken)

    def balance(self, user: str) -> int:
        """Settled balance of ``user`` (no open holds), credits; may be negative (debt)."""
        mine = [(tid, t) for tid, t in self._topups.items() if t.user == user]
        return (sum(t.credits - self.clawed(tid) for tid, t in mine)
                + self._granted[user] - self._spent[user])

    def users(self) -> set[str]:
        return ({t.user for t in self._topups.values()} | set(self._granted)
                | set(self._spent))
