"""Errors raised by ledger operations. All subclass ``LedgerError``."""
from __future__ import annotations


class LedgerError(Exception):
    """Base class of ledger refusals."""


class InsufficientFunds(LedgerError):
    """A hold larger than the wallet's available credits (or a wallet in debt / frozen)."""


class IdempotencyConflict(LedgerError):
    """An operation key replayed with a different amount or subject than its first use."""


class HoldClosed(LedgerError):
    """Capture/release of a hold that another operation key already ended.

    ``status`` is how it ended (captured, released, expired); ``close_key`` by which key.
    """

    def __init__(self, hold_id: int, status: str, close_key: str | None) -> None:
        super().__init__(f"hold {hold_id} already {status} by {close_key}")
        self.hold_id, self.status, self.close_key = hold_id, status, close_key


class UnknownHold(LedgerError):
    """No hold with that id."""
