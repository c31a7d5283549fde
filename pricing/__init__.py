"""Pricing: the rate card, quotes, settlement amounts and top-up packs. Pure: no DB, no I/O
beyond reading its own data files."""
from pricing.packs import Pack, load_packs
from pricing.quote import JobParams, Quote, QuoteError, charge, quote, runpod_cost_usd
from pricing.ratecard import JOB_TYPES, RateCard, card_by_version, card_in_force, load_ratecards

__all__ = [
    "JOB_TYPES", "JobParams", "Pack", "Quote", "QuoteError", "RateCard", "card_by_version", "card_in_force",
    "charge", "load_packs", "load_ratecards", "quote", "runpod_cost_usd",
]
