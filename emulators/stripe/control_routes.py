"""The Stripe stand-in's control surface (JSON, no auth, local use only): it plays the
customer, the bank and the card network. Every action answers ``{"object", "events",
"deliveries"}`` after sending the events, **signed**, to the receiver; the routes are
listed in ``app.py``'s docstring. Delivery options in any action's body: ``deliver``
(default true), ``duplicate`` (each event twice), ``order`` (``stripe`` | ``reversed`` |
``shuffled``). 404 for an unknown object or verb, 400 when the action does not apply.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import requests
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from emulators.stripe.api import error
from emulators.stripe.events import signed
from emulators.stripe.state import InvalidRequest, NotFound, StripeState

Events = list[dict[str, Any]]
# An action: the request's JSON body → (the object acted on, the events it emitted).
Action = Callable[[dict[str, Any]], tuple[dict[str, Any], Events]]


class Deliverer:
    """Posts events to ``webhook_url`` signed with ``webhook_secret`` (Stripe-Signature)."""

    def __init__(self, webhook_url: str | None, webhook_secret: str) -> None:
        self.url = webhook_url
        self.secret = webhook_secret
        self.http = requests.Session()

    def deliver(self, events: Events, options: dict[str, Any]) -> list[int]:
        """Send ``events`` per the delivery ``options``; the HTTP status of each POST in
        order sent (0: receiver unreachable — Stripe would retry for 3 days)."""
        if not options.get("deliver", True) or not self.url:
            return []
        batch = [e for e in events for _ in range(2 if options.get("duplicate") else 1)]
        order = options.get("order", "stripe")
        if order == "reversed":
            batch.reverse()
        elif order == "shuffled":
            random.shuffle(batch)
        codes = []
        for ev in batch:
            payload, headers = signed(ev, self.secret)
            try:
                codes.append(self.http.post(self.url, data=payload, headers=headers, timeout=10).status_code)
            except requests.RequestException:
                codes.append(0)
        return codes

    def run(self, fn: Action) -> ResponseReturnValue:
        """Run the action on the request body, deliver its events, answer the result."""
        body = request.get_json(silent=True) or {}
        try:
            obj, events = fn(body)
        except NotFound as err:
            return error(404, str(err.args[0]), code="resource_missing")
        except (InvalidRequest, ValueError, TypeError) as err:
            return error(400, str(err))
        return jsonify({"object": obj, "events": events, "deliveries": self.deliver(events, body)})


def register_admin(app: Flask, state: StripeState, throttle: dict[str, int]) -> None:
    """``/_control/idempotency/forget``, ``/_control/rate_limit`` ``{count}`` and ``/healthz``."""

    @app.post("/_control/idempotency/forget")
    def control_forget_keys() -> ResponseReturnValue:
        """Forget every idempotency key, as Stripe does once a key is 24 hours old
        (https://docs.stripe.com/api/idempotent_requests): a retry then creates anew."""
        with state.lock:
            forgotten = len(state.idempotency)
            state.idempotency.clear()
        return jsonify({"forgotten": forgotten})

    @app.post("/_control/rate_limit")
    def control_rate_limit() -> ResponseReturnValue:
        throttle["left"] = int((request.get_json(silent=True) or {}).get("count", 1))
        return jsonify({"rate_limited_requests": throttle["left"]})

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return jsonify({"status": "ok"})


def _session_action(state: StripeState, sid: str, verb: str, body: dict[str, Any]
                    ) -> tuple[dict[str, Any], Events]:
    if verb == "pay":
        events = state.pay(sid, body.get("method", "card"), body.get("outcome", "succeeded"))
    elif verb == "settle":
        events = state.settle_delayed(sid, body.get("outcome", "succeeded"))
    elif verb == "expire":
        events = state.expire(sid)
    elif verb == "refund":
        events = state.refund(sid, body.get("amount"), bool(body.get("list_refunds")),
                              body.get("api_version"))
    elif verb == "dispute":
        events = state.dispute(sid, body.get("amount"), bool(body.get("prevented")))
    else:
        raise NotFound(f"unknown action {verb}")
    return events[-1]["data"]["object"], events


def register_payments(app: Flask, state: StripeState, out: Deliverer) -> None:
    """Session actions (pay, settle, expire, refund, dispute), refund failure, dispute close."""

    @app.post("/_control/checkout/sessions/<sid>/<verb>")
    def control_session(sid: str, verb: str) -> ResponseReturnValue:
        return out.run(lambda body: _session_action(state, sid, verb, body))

    @app.post("/_control/refunds/<rid>/fail")
    def control_fail_refund(rid: str) -> ResponseReturnValue:
        return out.run(lambda body: (state.get("refund", rid), state.fail_refund(rid, body.get("api_version"))))

    @app.post("/_control/disputes/<did>/close")
    def control_close_dispute(did: str) -> ResponseReturnValue:
        def close(body: dict[str, Any]) -> tuple[dict[str, Any], Events]:
            events = state.close_dispute(did, body.get("outcome", "won"))
            return events[-1]["data"]["object"], events
        return out.run(close)


def register_billing(app: Flask, state: StripeState, out: Deliverer) -> None:
    """Subscription actions (renew, change, cancel) and one-off invoice payments."""

    @app.post("/_control/subscriptions/<sub_id>/<verb>")
    def control_subscription(sub_id: str, verb: str) -> ResponseReturnValue:
        def act(body: dict[str, Any]) -> tuple[dict[str, Any], Events]:
            if verb == "renew":
                events = state.renew(sub_id)
            elif verb == "change":
                events = state.change_plan(sub_id, str(body["price"]), float(body.get("remaining", 0.5)))
            elif verb == "cancel":
                events = state.cancel(sub_id)
            else:
                raise NotFound(f"unknown action {verb}")
            return state.get("subscription", sub_id), events
        return out.run(act)

    @app.post("/_control/invoices")
    def control_pay_invoice() -> ResponseReturnValue:
        def pay(body: dict[str, Any]) -> tuple[dict[str, Any], Events]:
            events = state.pay_invoice(str(body["customer"]), str(body["price"]),
                                       None if body.get("amount") is None else int(body["amount"]),
                                       int(body.get("quantity", 1)))
            return events[0]["data"]["object"], events
        return out.run(pay)
