"""The Stripe stand-in as a Flask app: the API subset ``stripe.StripeClient`` uses, served
at its base address, and a control surface that plays the customer, the bank and the
card network — each action sends the matching **signed** webhooks to the receiver.

API (``Authorization: Bearer sk_…``; form-encoded bodies as the SDK sends them;
Stripe's error shape ``{"error": {"type", "code", "message"}}``):
``POST/GET /v1/checkout/sessions``, ``GET /v1/checkout/sessions/{id}``,
``GET /v1/events[/{id}]``, ``GET /v1/payment_intents/{id}``, ``GET /v1/charges/{id}``,
``GET /v1/refunds[/{id}]`` (``?charge=``), ``GET /v1/disputes/{id}``, ``GET /v1/invoices/{id}``.

Control (JSON, no auth, local use only) — every action answers
``{"object": …, "events": [...], "deliveries": [status codes]}``:
``POST /_control/checkout/sessions/{id}/pay`` ``{method: card|delayed, outcome}``,
``…/{id}/settle`` ``{outcome}``, ``…/{id}/expire``, ``…/{id}/refund`` ``{amount?, list_refunds?}``,
``…/{id}/dispute`` ``{amount?}``, ``POST /_control/refunds/{id}/fail``,
``POST /_control/disputes/{id}/close`` ``{outcome: won|lost|appeal}`` (appeal: a lost one won
on appeal), ``{api_version}`` on refund/fail (before 2024-10-28: legacy refund events),
``{prevented}`` on dispute,
``POST /_control/invoices`` ``{customer, price, amount?, quantity?}``,
``POST /_control/subscriptions/{sub}/renew``, ``…/{sub}/change`` ``{price, remaining?}``
(proration invoiced at once), ``…/{sub}/cancel``. A ``mode=subscription`` session is
paid with ``…/sessions/{id}/pay`` (a subscription, its first invoice and payment);
``…/{in_id}/refund`` and ``…/{in_id}/dispute`` act on an invoice's charge.
``GET /_control/ledger``: every payment, refund, dispute and invoice issued (ground truth).
``POST /_control/idempotency/forget``: forget idempotency keys (Stripe prunes them after 24 h).
Delivery options in any action's body: ``deliver`` (default true), ``duplicate`` (send
each event twice), ``order`` (``stripe`` | ``reversed`` | ``shuffled``).
"""
from __future__ import annotations

import hmac
import random
import re
from collections.abc import Callable
from typing import Any

import requests
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from emulators.stripe import ground_truth
from emulators.stripe.events import signed
from emulators.stripe.state import InvalidRequest, NotFound, StripeState

_KEY = re.compile(r"([^\[\]]+)|\[([^\[\]]*)\]")


def parse_form(items: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (``a[b][0][c]=v``) back into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in items:
        parts = [a or b for a, b in _KEY.findall(key)]
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt: Any = value if last else ([] if parts[i + 1].isdigit() else {})
            if isinstance(node, list):
                idx = int(part)
                while len(node) <= idx:
                    node.append(None)
                if node[idx] is None or last:
                    node[idx] = nxt
                node = node[idx]
            else:
                if part not in node or last:
                    node[part] = nxt
                node = node[part]
    return root


def _error(status: int, message: str, type_: str = "invalid_request_error",
           code: str | None = None) -> ResponseReturnValue:
    return jsonify({"error": {"type": type_, "code": code, "message": message}}), status


def create_app(*, api_key: str, webhook_secret: str, webhook_url: str | None,
               url_base: str = "http://127.0.0.1:8011") -> Flask:
    """The stand-in; its state is ``app.extensions["stripe_state"]``."""
    app = Flask(__name__)
    state = StripeState(url_base)
    app.extensions["stripe_state"] = state
    ground_truth.register(app, state)
    http = requests.Session()

    def deliver(events: list[dict[str, Any]], options: dict[str, Any]) -> list[int]:
        if not options.get("deliver", True) or not webhook_url:
            return []
        batch = [e for e in events for _ in range(2 if options.get("duplicate") else 1)]
        order = options.get("order", "stripe")
        if order == "reversed":
            batch.reverse()
        elif order == "shuffled":
            random.shuffle(batch)
        codes = []
        for ev in batch:
            payload, headers = signed(ev, webhook_secret)
            try:
                codes.append(http.post(webhook_url, data=payload, headers=headers, timeout=10).status_code)
            except requests.RequestException:
                codes.append(0)  # receiver unreachable; Stripe would retry for 3 days
        return codes

    def action(fn: Callable[[dict[str, Any]], tuple[dict[str, Any], list[dict[str, Any]]]]) -> ResponseReturnValue:
        body = request.get_json(silent=True) or {}
        try:
            obj, events = fn(body)
        except NotFound as err:
            return _error(404, str(err.args[0]), code="resource_missing")
        except (InvalidRequest, ValueError, TypeError) as err:
            return _error(400, str(err))
        return jsonify({"object": obj, "events": events, "deliveries": deliver(events, body)})

    throttle = {"left": 0}  # the next N API requests answer 429 (POST /_control/rate_limit)

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

    @app.before_request
    def _authorize() -> ResponseReturnValue | None:
        if not request.path.startswith("/v1/"):
            return None
        if throttle["left"] > 0:
            throttle["left"] -= 1
            return _error(429, "Too many requests hit the API too quickly.", code="rate_limit",
                          type_="invalid_request_error")
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, f"Bearer {api_key}".encode()):
            return _error(401, "Invalid API Key provided")
        return None

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return jsonify({"status": "ok"})

    # -- API -----------------------------------------------------------------------------
    @app.post("/v1/checkout/sessions")
    def create_session() -> ResponseReturnValue:
        params = parse_form(list(request.form.items(multi=True)))
        try:
            return jsonify(state.create_session(params, request.headers.get("Idempotency-Key")))
        except InvalidRequest as err:
            if str(err).startswith("idempotency_error"):
                return _error(400, str(err).split(": ", 1)[1], type_="idempotency_error")
            return _error(400, str(err))

    def _list(kind: str, url: str, **filters: str) -> ResponseReturnValue:
        try:
            limit = max(1, min(100, int(request.args.get("limit", 10))))
        except ValueError:
            return _error(400, "limit must be an integer", code="parameter_invalid_integer")
        data, more = state.list(kind, limit=limit, starting_after=request.args.get("starting_after"),
                                **{k: v for k, v in filters.items() if v})
        return jsonify({"object": "list", "data": data, "has_more": more, "url": url})

    @app.get("/v1/checkout/sessions")
    def list_sessions() -> ResponseReturnValue:
        return _list("checkout.session", "/v1/checkout/sessions",
                     payment_intent=request.args.get("payment_intent", ""),
                     customer=request.args.get("customer", ""))

    @app.get("/v1/refunds")
    def list_refunds() -> ResponseReturnValue:
        return _list("refund", "/v1/refunds", charge=request.args.get("charge", ""),
                     payment_intent=request.args.get("payment_intent", ""))

    @app.get("/v1/events")
    def list_events() -> ResponseReturnValue:
        return _list("event", "/v1/events", type=request.args.get("type", ""))

    routes = {"subscriptions": "subscription", "invoice_payments": "invoice_payment",
              "checkout/sessions": "checkout.session", "events": "event", "charges": "charge",
              "refunds": "refund", "disputes": "dispute", "invoices": "invoice",
              "payment_intents": "payment_intent"}
    for path, kind in routes.items():
        def retrieve(oid: str, kind: str = kind) -> ResponseReturnValue:
            try:
                return jsonify(state.get(kind, oid))
            except NotFound as err:
                return _error(404, str(err.args[0]), code="resource_missing")
        app.add_url_rule(f"/v1/{path}/<oid>", f"retrieve_{kind}", retrieve, methods=["GET"])

    @app.get("/pay/<sid>")
    def hosted_page(sid: str) -> ResponseReturnValue:
        """Stands in for Stripe's hosted checkout page (``session.url``)."""
        try:
            s = state.get("checkout.session", sid)
        except NotFound:
            return _error(404, f"No such checkout.session: '{sid}'", code="resource_missing")
        return jsonify({"session": sid, "status": s["status"], "amount_total": s["amount_total"],
                        "currency": s["currency"], "pay": f"/_control/checkout/sessions/{sid}/pay"})

    # -- control ---------------------------------------------------------------------------
    def session_action(sid: str, verb: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
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

    @app.post("/_control/checkout/sessions/<sid>/<verb>")
    def control_session(sid: str, verb: str) -> ResponseReturnValue:
        return action(lambda body: session_action(sid, verb, body))

    @app.post("/_control/refunds/<rid>/fail")
    def control_fail_refund(rid: str) -> ResponseReturnValue:
        return action(lambda body: (state.get("refund", rid), state.fail_refund(rid, body.get("api_version"))))

    @app.post("/_control/disputes/<did>/close")
    def control_close_dispute(did: str) -> ResponseReturnValue:
        def close(body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            events = state.close_dispute(did, body.get("outcome", "won"))
            return events[-1]["data"]["object"], events
        return action(close)

    @app.post("/_control/subscriptions/<sub_id>/<verb>")
    def control_subscription(sub_id: str, verb: str) -> ResponseReturnValue:
        def act(body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            if verb == "renew":
                events = state.renew(sub_id)
            elif verb == "change":
                events = state.change_plan(sub_id, str(body["price"]), float(body.get("remaining", 0.5)))
            elif verb == "cancel":
                events = state.cancel(sub_id)
            else:
                raise NotFound(f"unknown action {verb}")
            return state.get("subscription", sub_id), events
        return action(act)

    @app.post("/_control/invoices")
    def control_pay_invoice() -> ResponseReturnValue:
        def pay(body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            events = state.pay_invoice(str(body["customer"]), str(body["price"]),
                                       None if body.get("amount") is None else int(body["amount"]),
                                       int(body.get("quantity", 1)))
            return events[0]["data"]["object"], events
        return action(pay)

    return app
