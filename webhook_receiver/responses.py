"""Response bodies of the HTTP API as pydantic models: the source of ``/openapi.json``.

Views build plain dicts (``ledger.jobs.receipt`` …); tests validate real responses against
these models (``extra="forbid"``), so the published spec cannot drift from what the
receiver answers. Money: int credits; USD and GPU-seconds: decimal strings; RunPod
timings: int milliseconds; times: ISO 8601 UTC with ``Z``.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuoteBody(_Strict):
    """The price of a job before it runs; ``hold`` is the most it can cost."""

    estimated_gpu_seconds: str = Field(description="decimal string, GPU-seconds")
    hold: int = Field(description="credits held while the job runs")
    max_gpu_seconds: int = Field(description="GPU-seconds the hold funds (RunPod executionTimeout)")
    price_per_gpu_second: str = Field(description="decimal string, credits per GPU-second")
    min_charge: int = Field(description="credits")
    ratecard_version: str


class QuoteAnswer(QuoteBody):
    """``POST /v1/quotes``: the price preview, nothing stored."""

    type: str


class JobAccepted(_Strict):
    """``202`` answer to ``POST /v1/jobs``."""

    job_id: str
    status: Literal["requested"]
    quote: QuoteBody


class RunPodTimings(_Strict):
    job_id: str | None = Field(description="RunPod's job id")
    status: str | None = Field(description="RunPod's last status")
    delay_ms: int | None = Field(description="queue + cold start, ms (not charged)")
    execution_ms: int | None = Field(description="measured GPU time, ms (charged)")


class JobReceipt(_Strict):
    """``GET /v1/jobs/{job_id}``: status and receipt."""

    job_id: str
    user_id: str
    type: str
    status: str
    params: dict[str, Any]
    quote: QuoteBody
    hold: int = Field(description="credits held (0 before the hold is placed)")
    runpod: RunPodTimings
    charge: int | None = Field(description="credits captured")
    released: int | None = Field(description="credits released back to the wallet")
    runpod_cost_usd: str | None = Field(description="executionTime x GPU USD/s: what the user paid for")
    margin_usd: str | None
    runpod_billed_usd: str | None = Field(description="RunPod's bill: cold-start share of delayTime "
                                          "+ executionTime, per second rounded up")
    billed_margin_usd: str | None = Field(description="charge at $0.01 a credit - runpod_billed_usd")
    cost_basis: dict[str, str] = Field(description="what each cost figure measures")
    output: Any = None
    error: str | None
    stop_reason: str | None = Field(description="why a cancel/expiry stopped the job")
    flagged: bool = Field(description="needs an operator's look (e.g. billed after a stop)")
    created_at: str | None
    held_at: str | None
    dispatched_at: str | None
    finished_at: str | None
    timestamps: dict[str, str] = Field(description="state → when it was entered (ISO UTC)")


class WalletBody(_Strict):
    """``GET /v1/wallets/{user_id}``; an unknown user has zeros."""

    user_id: str
    balance: int = Field(description="credits")
    held: int = Field(description="credits reserved by open holds")
    available: int = Field(description="balance − held, credits")
    status: str
    subscriptions: list[dict[str, Any]] = Field(
        default_factory=list, description="[{id, plan, status, current_period_end}]; only for subscribers")


class Entry(_Strict):
    id: str = Field(description="tx_… (a ledger transaction) or hold_… (a hold)")
    kind: str = Field(description="topup, capture, clawback, … or a hold's event")
    amount: int = Field(description="signed credits on the wallet")
    op_key: str
    ref: str | None
    created_at: str


class EntriesPage(_Strict):
    """``GET /v1/wallets/{user_id}/entries``: newest first; pass ``next_cursor`` back as
    ``cursor`` for the next page (null at the end)."""

    user_id: str
    entries: list[Entry]
    next_cursor: str | None


class PackBody(_Strict):
    id: str
    price: int = Field(description="minor units (cents) of currency")
    currency: str
    credits: int = Field(description="credits granted, bonus included")


class Packs(_Strict):
    """``GET /v1/packs``: top-up packs, cheapest first."""

    packs: list[PackBody]


class TopupCreated(_Strict):
    """``201`` answer to ``POST /v1/topups``: send the user to ``checkout_url``."""

    topup_id: int
    session_id: str
    checkout_url: str | None
    status: str
    pack: PackBody


class PlanBody(_Strict):
    id: str
    price: str = Field(description="the Stripe Price id")
    credits: int = Field(description="credits granted per full period")
    trial_credits: int = Field(description="credits a $0 (trial) invoice grants")
    currency: str
    amount: int = Field(description="minor units (cents) per period")


class Plans(_Strict):
    """``GET /v1/plans``: subscription plans, cheapest first."""

    plans: list[PlanBody]


class SubscriptionCreated(_Strict):
    """``201`` answer to ``POST /v1/subscriptions``: send the user to ``checkout_url``;
    ``subscription_id`` is null until Checkout completes (Stripe creates it then)."""

    subscription_id: str | None
    session_id: str
    checkout_url: str | None
    plan: PlanBody


class FieldError(_Strict):
    field: str
    message: str


class ErrorDetail(_Strict):
    code: str
    message: str
    fields: list[FieldError] | None = None


class ErrorBody(_Strict):
    """Every 4xx/5xx: ``{"error": {"code", "message", "fields"?}}``."""

    error: ErrorDetail


class StripeAck(_Strict):
    """``POST /webhooks/stripe``: stored (or already stored: ``duplicate``)."""

    received: bool
    duplicate: bool


class RunPodAck(_Strict):
    received: bool


class RunPodCallback(BaseModel):
    """The body RunPod POSTs to a job's webhook URL (its ``/status`` body). Never trusted
    for money: a valid URL token only triggers a ``/status`` re-fetch."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    status: str | None = None
    executionTime: int | None = None
    delayTime: int | None = None


class Health(_Strict):
    status: Literal["ok"]


class Readiness(_Strict):
    """``GET /readyz``: ``checks`` names each dependency with ``ok`` or what failed."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str]
