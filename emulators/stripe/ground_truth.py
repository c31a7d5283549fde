"""``GET /_control/ledger``: the stand-in's ground truth for the proof tests (issue 13) —
every payment (charge), refund, dispute and invoice it issued, amounts in cents, with
Stripe's statuses, oldest first. What the code under test wrote is never the source."""
from __future__ import annotations

from typing import Any

from flask import Flask, jsonify

from emulators.stripe.state import StripeState

FIELDS = {
    "charge": ("id", "amount", "amount_refunded", "currency", "payment_intent", "customer", "status",
               "disputed"),
    "refund": ("id", "amount", "currency", "charge", "payment_intent", "status"),
    "dispute": ("id", "amount", "currency", "charge", "payment_intent", "status"),
    "invoice": ("id", "customer", "amount_paid", "currency", "billing_reason", "status"),
}


def ledger(state: StripeState) -> dict[str, list[dict[str, Any]]]:
    """``{"payments": [...], "refunds": [...], "disputes": [...], "invoices": [...]}``."""
    with state.lock:
        out = {}
        for kind, fields in FIELDS.items():
            rows = [{f: state.objects[kind][i].get(f) for f in fields} for i in state.order[kind]]
            out["payments" if kind == "charge" else f"{kind}s"] = rows
        for inv, row in zip(state.order["invoice"], out["invoices"], strict=True):
            row["charge"] = state.invoice_charge.get(inv)
            row["lines"] = [{"price": ((ln.get("pricing") or {}).get("price_details") or {}).get("price"),
                             "amount": ln.get("amount"), "quantity": ln.get("quantity")}
                            for ln in state.objects["invoice"][inv]["lines"]["data"]]
        return out


def register(app: Flask, state: StripeState) -> None:
    app.add_url_rule("/_control/ledger", "control_ledger", lambda: jsonify(ledger(state)), methods=["GET"])
