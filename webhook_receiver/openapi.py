"""``GET /openapi.json``: an OpenAPI 3.1 document generated from the pydantic models.

Each route is registered once in ``ROUTES`` (path, method, request model, responses by
status, auth); ``spec()`` turns the models into JSON Schema with pydantic and assembles
the document. A route added to the receiver is added here too — a test fails while any
Flask route is missing from the spec.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from flask import Blueprint, jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from base.ids import USER_ID_PATTERN
from ledger.entries import MAX_LIMIT
from webhook_receiver import responses as r
from webhook_receiver.idempotency import HEADER as IDEMPOTENCY_HEADER, KEY_PATTERN as IDEMPOTENCY_KEY_PATTERN
from webhook_receiver.schemas import JobRequest, QuoteRequest
from webhook_receiver.stripe_webhooks import StripeEnvelope
from webhook_receiver.subscriptions import SubscriptionRequest
from webhook_receiver.topups import TopupRequest

bp = Blueprint("openapi", __name__)


@dataclass(frozen=True)
class Route:
    """One operation. ``path`` in OpenAPI form (``/v1/jobs/{job_id}``); ``responses``
    maps a status code to its body model (None: no JSON schema, e.g. text)."""

    method: str
    path: str
    summary: str
    responses: dict[int, type[BaseModel] | None]
    request: type[BaseModel] | None = None
    auth: bool = False
    tag: str = "api"
    headers: tuple[tuple[str, str, bool], ...] = ()  # (name, description, required)
    content_type: str = "application/json"
    params: dict[str, str] = field(default_factory=dict)  # path parameter → description
    query: tuple[tuple[str, str, dict[str, Any]], ...] = ()  # (name, description, JSON Schema), optional


# Parameter schemas as strict as the code's checks (issue 13: schemathesis generates from
# them, and a looser spec documents requests the code refuses).
PATH_SCHEMAS: dict[str, dict[str, Any]] = {"user_id": {"type": "string", "pattern": USER_ID_PATTERN}}
# (path, header): only /v1/jobs checks its Idempotency-Key (webhook_receiver.idempotency);
# the Checkout routes hash any key into Stripe's (gateways.stripe.idempotency_key).
HEADER_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("/v1/jobs", IDEMPOTENCY_HEADER): {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN}}


_ERR = r.ErrorBody
ROUTES: list[Route] = [
    Route("post", "/v1/jobs", "Submit a GPU job: stored, quoted, hold enqueued",
          {202: r.JobAccepted, 400: _ERR, 401: _ERR, 402: _ERR, 409: _ERR, 422: _ERR},
          request=JobRequest, auth=True,
          headers=(("Idempotency-Key", "same key + same body → same answer", False),)),
    Route("get", "/v1/jobs/{job_id}", "A job's status and receipt",
          {200: r.JobReceipt, 401: _ERR, 404: _ERR}, auth=True, params={"job_id": "job_…"}),
    Route("post", "/v1/jobs/{job_id}/cancel", "Cancel a job (released, or settled by the cancel policy)",
          {202: r.JobReceipt, 401: _ERR, 404: _ERR, 409: _ERR}, auth=True, params={"job_id": "job_…"}),
    Route("post", "/v1/quotes", "Price preview for a job; stores nothing",
          {200: r.QuoteAnswer, 400: _ERR, 401: _ERR, 422: _ERR}, request=QuoteRequest, auth=True),
    Route("get", "/v1/wallets/{user_id}", "A wallet's balance, held and available credits",
          {200: r.WalletBody, 401: _ERR, 422: _ERR}, auth=True, params={"user_id": "the app's user id"}),
    Route("get", "/v1/wallets/{user_id}/entries", "A wallet's ledger entries, newest first",
          {200: r.EntriesPage, 401: _ERR, 422: _ERR}, auth=True, params={"user_id": "the app's user id"},
          query=(("limit", f"1–{MAX_LIMIT}, default 50", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
                 ("cursor", "next_cursor of the previous page",
                  {"type": "string", "maxLength": 512, "pattern": "^[A-Za-z0-9_-]*$"}))),
    Route("get", "/v1/packs", "Top-up packs (price, currency, credits)", {200: r.Packs, 401: _ERR}, auth=True),
    Route("post", "/v1/topups", "Start buying a pack: a Stripe Checkout Session",
          {201: r.TopupCreated, 400: _ERR, 401: _ERR, 409: _ERR, 422: _ERR, 502: _ERR, 503: _ERR},
          request=TopupRequest, auth=True,
          headers=(("Idempotency-Key", "a retried request answers the same session", False),)),
    Route("get", "/v1/plans", "Subscription plans (Stripe Price, credits per period)",
          {200: r.Plans, 401: _ERR}, auth=True),
    Route("post", "/v1/subscriptions", "Subscribe to a plan: a Stripe Checkout Session (mode=subscription)",
          {201: r.SubscriptionCreated, 400: _ERR, 401: _ERR, 409: _ERR, 422: _ERR, 502: _ERR, 503: _ERR},
          request=SubscriptionRequest, auth=True,
          headers=(("Idempotency-Key", "a retried request answers the same session", False),)),
    Route("post", "/webhooks/stripe", "Stripe event delivery (signed)",
          {200: r.StripeAck, 400: _ERR, 503: _ERR}, request=StripeEnvelope, tag="webhooks",
          headers=(("Stripe-Signature", "t=…,v1=… HMAC-SHA256 of the raw body", True),)),
    Route("post", "/webhooks/runpod/{token}", "RunPod completion callback",
          {200: r.RunPodAck, 404: _ERR}, request=r.RunPodCallback, tag="webhooks",
          params={"token": "per-job webhook token (64 hex)"}),
    Route("get", "/healthz", "Liveness", {200: r.Health}, tag="operations"),
    Route("get", "/readyz", "Readiness: database, broker, migrations at head",
          {200: r.Readiness, 503: r.Readiness}, tag="operations"),
    Route("get", "/metrics", "Prometheus metrics (text exposition; Authorization: Bearer "
          "GPUBILL_METRICS_TOKEN)", {200: None, 401: _ERR}, tag="operations",
          content_type="text/plain"),
    Route("get", "/openapi.json", "This document", {200: None}, tag="operations"),
]


def register(route: Route) -> None:
    """Add a route defined elsewhere (one call next to its blueprint, at import time:
    ``spec()`` is built once per process)."""
    ROUTES.append(route)


def _operation(route: Route, ref: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": route.summary, "tags": [route.tag],
                          "operationId": f"{route.method}_{route.path.strip('/').replace('/', '_')}"
                          .replace("{", "").replace("}", "").replace(".", "_")}
    parameters = [{"name": n, "in": "path", "required": True, "description": d,
                   "schema": PATH_SCHEMAS.get(n, {"type": "string"})} for n, d in route.params.items()]
    parameters += [{"name": n, "in": "query", "required": False, "description": d,
                    "schema": schema} for n, d, schema in route.query]
    parameters += [{"name": n, "in": "header", "required": req, "description": d,
                    "schema": HEADER_SCHEMAS.get((route.path, n), {"type": "string"})}
                   for n, d, req in route.headers]
    if parameters:
        op["parameters"] = parameters
    if route.request is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": ref[route.request]}}}
    op["responses"] = {}
    responses = dict(route.responses)
    if route.request is not None:  # webhook_receiver.bodies: depth 400, size 413, any body route
        responses.setdefault(400, _ERR)
        responses.setdefault(413, _ERR)
    if route.auth:  # webhook_receiver.ratelimit
        responses.setdefault(429, _ERR)
    for status, model in sorted(responses.items()):
        doc = (model.__doc__ or "").strip() if model else ""
        op["responses"][str(status)] = {
            "description": doc.splitlines()[0] if doc else route.summary,
            # errors are JSON on every route (webhook_receiver.errors), whatever the success type
            "content": {(route.content_type if status < 400 else "application/json"):
                        {"schema": ref[model] if model else {}}}}
    if route.auth:
        op["security"] = [{"apiKey": []}]
    return op


@lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document (dict), built once per process."""
    models = {m for route in ROUTES for m in (route.request, *route.responses.values()) if m}
    keyed = sorted(models, key=lambda m: m.__name__)
    mapping, defs = models_json_schema([(m, "validation") for m in keyed],
                                       ref_template="#/components/schemas/{model}")
    ref = {m: mapping[(m, "validation")] for m in keyed}
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method] = _operation(route, ref)
    return {
        "openapi": "3.1.0",
        "info": {"title": "gpubill", "version": "1",
                 "description": "Prepaid credits (Stripe) spent on RunPod GPU jobs. Money is int "
                                "credits (1 credit = $0.01 list price)."},
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {}),
                       "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}}},
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(spec())
