"""The Stripe stand-in's API routes (what ``stripe.StripeClient`` calls): authorization and
rate limiting of ``/v1/…``, Checkout Session creation, list and retrieve endpoints, and
the hosted payment page. Errors use Stripe's shape ``{"error": {"type", "code",
"message"}}`` (400 invalid, 401 bad key, 404 ``resource_missing``, 429 ``rate_limit``).
"""
from __future__ import annotations

import hmac
import re
from typing import Any

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

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


def error(status: int, message: str, type_: str = "invalid_request_error",
          code: str | None = None) -> ResponseReturnValue:
    """Stripe's error body with HTTP ``status``."""
    return jsonify({"error": {"type": type_, "code": code, "message": message}}), status


def register_auth(app: Flask, api_key: str, throttle: dict[str, int]) -> None:
    """``/v1/…`` needs ``Authorization: Bearer {api_key}`` (401); while
    ``throttle["left"]`` > 0 each request uses one up and answers 429 instead."""

    @app.before_request
    def _authorize() -> ResponseReturnValue | None:
        if not request.path.startswith("/v1/"):
            return None
        if throttle["left"] > 0:
            throttle["left"] -= 1
            return error(429, "Too many requests hit the API too quickly.", code="rate_limit",
                         type_="invalid_request_error")
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, f"Bearer {api_key}".encode()):
            return error(401, "Invalid API Key provided")
        return None


def register_checkout(app: Flask, state: StripeState) -> None:
    """``POST /v1/checkout/sessions`` (form-encoded, ``Idempotency-Key``) and the hosted
    page ``GET /pay/{id}`` standing in for ``session.url``."""

    @app.post("/v1/checkout/sessions")
    def create_session() -> ResponseReturnValue:
        params = parse_form(list(request.form.items(multi=True)))
        try:
            return jsonify(state.create_session(params, request.headers.get("Idempotency-Key")))
        except InvalidRequest as err:
            if str(err).startswith("idempotency_error"):
                return error(400, str(err).split(": ", 1)[1], type_="idempotency_error")
            return error(400, str(err))

    @app.get("/pay/<sid>")
    def hosted_page(sid: str) -> ResponseReturnValue:
        """Stands in for Stripe's hosted checkout page (``session.url``)."""
        try:
            s = state.get("checkout.session", sid)
        except NotFound:
            return error(404, f"No such checkout.session: '{sid}'", code="resource_missing")
        return jsonify({"session": sid, "status": s["status"], "amount_total": s["amount_total"],
                        "currency": s["currency"], "pay": f"/_control/checkout/sessions/{sid}/pay"})


def register_lists(app: Flask, state: StripeState) -> None:
    """``GET /v1/checkout/sessions``, ``/v1/refunds``, ``/v1/events``: newest first,
    ``limit`` 1–100 (default 10), ``starting_after``, and each endpoint's filters."""

    def _list(kind: str, url: str, **filters: str) -> ResponseReturnValue:
        try:
            limit = max(1, min(100, int(request.args.get("limit", 10))))
        except ValueError:
            return error(400, "limit must be an integer", code="parameter_invalid_integer")
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


# URL path under /v1/ → the stored object kind, for ``GET /v1/{path}/{id}``.
RETRIEVABLE = {"subscriptions": "subscription", "invoice_payments": "invoice_payment",
               "checkout/sessions": "checkout.session", "events": "event", "charges": "charge",
               "refunds": "refund", "disputes": "dispute", "invoices": "invoice",
               "payment_intents": "payment_intent"}


def register_retrieve(app: Flask, state: StripeState) -> None:
    """``GET /v1/{path}/{id}`` for every ``RETRIEVABLE`` path (404 ``resource_missing``)."""
    for path, kind in RETRIEVABLE.items():
        def retrieve(oid: str, kind: str = kind) -> ResponseReturnValue:
            try:
                return jsonify(state.get(kind, oid))
            except NotFound as err:
                return error(404, str(err.args[0]), code="resource_missing")
        app.add_url_rule(f"/v1/{path}/<oid>", f"retrieve_{kind}", retrieve, methods=["GET"])
