"""Pricing: the rate card, quotes, settlement amounts and top-up packs. Pure: no DB, no I/O
beyond reading its own data files."""
from pricing.packs import Pack, Plan, load_packs, load_plans, plans_by_id
from pricing.quote import (
    JobParams,
    Quote,
    QuoteError,
    cancel_charge,
    charge,
    quote,
    quote_body,
    runpod_billed_usd,
    runpod_cost_usd,
)
from pricing.ratecard import JOB_TYPES, RateCard, card_by_version, card_in_force, load_ratecards

__all__ = [
    "JOB_TYPES", "JobParams", "Pack", "Quote", "QuoteError", "RateCard", "card_by_version", "card_in_force",
    "cancel_charge", "charge", "load_packs", "quote_body", "load_ratecards", "quote", "runpod_billed_usd",
    "runpod_cost_usd",
    "Plan", "load_plans", "plans_by_id",
]
