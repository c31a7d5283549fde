"""The rate card's formulas, read straight from its TOML: the tests' independent
expectation of what a job costs (never ``pricing``, the code under test)."""
from __future__ import annotations

import math
import tomllib
from decimal import Decimal
from pathlib import Path

CARD = Path(__file__).resolve().parents[1] / "pricing" / "ratecards" / "2026-11-01.toml"


def card_charge(job_type: str, execution_ms: int) -> int:
    """ceil(GPU-seconds × credits_per_gpu_second), at least min_charge (the card's comment);
    below the hold for the short jobs the tests run."""
    job = tomllib.loads(CARD.read_text())["jobs"][job_type]
    raw = math.ceil(Decimal(execution_ms) / 1000 * Decimal(job["credits_per_gpu_second"]))
    return max(raw, job["min_charge"])
