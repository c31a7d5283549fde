"""Task modules by area. Thin adapters: load ids, call one service, map errors to retries."""
import random

# Bounded retries with exponential backoff and full jitter (seconds), capped well below
# the visibility timeout: long waits belong in DB rows + beat, not in broker countdowns.
MAX_RETRIES = 6


def backoff(retries: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Seconds before retry number ``retries`` (0-based): random in [0, min(cap, base·2ⁿ)]."""
    return random.uniform(0, min(cap, base * 2 ** retries))
