"""A small HTTP client for the Stripe stand-in's control surface (the demo and the tests
play the customer and the bank through it). Every call answers the stand-in's
``{"object", "events", "deliveries"}``; ``StandInError`` on a 4xx."""
from __future__ import annotations

from typing import Any

import requests


class StandInError(RuntimeError):
    """The stand-in refused the action (its JSON error message)."""


class StripeStandIn:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")
        self.http = requests.Session()

    def _post(self, path: str, **body: Any) -> dict[str, Any]:
        r = self.http.post(f"{self.base}/_control/{path}", json=body, timeout=30)
        if r.status_code >= 400:
            raise StandInError(f"{r.status_code} {r.text}")
        return r.json()

    def pay(self, session_id: str, method: str = "card", outcome: str = "succeeded",
            **delivery: Any) -> dict[str, Any]:
        """Pay by ``card`` or a ``delayed`` method (``outcome`` succeeded | failed | pending)."""
        return self._post(f"checkout/sessions/{session_id}/pay", method=method, outcome=outcome, **delivery)

    def settle(self, session_id: str, outcome: str = "succeeded", **delivery: Any) -> dict[str, Any]:
        return self._post(f"checkout/sessions/{session_id}/settle", outcome=outcome, **delivery)

    def expire(self, session_id: str, **delivery: Any) -> dict[str, Any]:
        return self._post(f"checkout/sessions/{session_id}/expire", **delivery)

    def refund(self, session_id: str, amount: int | None = None, **delivery: Any) -> dict[str, Any]:
        """Refund ``amount`` cents (default: all that is left) of the session's charge."""
        return self._post(f"checkout/sessions/{session_id}/refund", amount=amount, **delivery)

    def fail_refund(self, refund_id: str, **delivery: Any) -> dict[str, Any]:
        return self._post(f"refunds/{refund_id}/fail", **delivery)

    def dispute(self, session_id: str, amount: int | None = None, **delivery: Any) -> dict[str, Any]:
        return self._post(f"checkout/sessions/{session_id}/dispute", amount=amount, **delivery)

    def close_dispute(self, dispute_id: str, outcome: str, **delivery: Any) -> dict[str, Any]:
        return self._post(f"disputes/{dispute_id}/close", outcome=outcome, **delivery)

    def pay_invoice(self, customer: str, price: str, **more: Any) -> dict[str, Any]:
        return self._post("invoices", customer=customer, price=price, **more)

    def subscription(self, sub_id: str, verb: str, **body: Any) -> dict[str, Any]:
        """``renew`` | ``change`` (``price``, ``remaining``) | ``cancel`` subscription ``sub_id``."""
        return self._post(f"subscriptions/{sub_id}/{verb}", **body)

