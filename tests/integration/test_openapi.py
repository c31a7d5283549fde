"""``GET /openapi.json``: valid OpenAPI, covers every route the receiver has, and the
running receiver's real answers match the published models."""
from __future__ import annotations

import re
import secrets

import pytest
import requests
from openapi_spec_validator import validate

from pricing import load_packs
from tests.helpers import Api, wait_for
from webhook_receiver import create_app, responses as r

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def spec(stack) -> dict:
    resp = requests.get(f"{stack.receiver_url}/openapi.json", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/json")
    return resp.json()


def test_the_document_is_valid_openapi_3(spec) -> None:
    validate(spec)  # raises OpenAPIValidationError with the offending path
    assert spec["openapi"].startswith("3.")
    job = spec["paths"]["/v1/jobs"]["post"]
    assert job["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JobRequest"}
    assert job["security"] == [{"apiKey": []}]
    assert spec["components"]["schemas"]["JobRequest"]["properties"]["type"]["enum"] == [
        "framing", "overlay", "upscale", "track"]


def test_every_route_of_the_receiver_is_described(stack, spec) -> None:
    app = create_app(stack.settings)
    routes = {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
              for rule in app.url_map.iter_rules() if rule.endpoint != "static"
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    described = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert routes - described == set(), "add these to webhook_receiver.openapi.ROUTES"
    assert described - routes == set(), "described but not served"


def test_real_answers_match_the_published_models(stack) -> None:
    api = Api(stack)
    user = f"u-{secrets.token_hex(4)}"
    r.StripeAck.model_validate(api.post_event(api.topup(user, "small")).json())
    wait_for(lambda: api.wallet(user)["balance"] == load_packs()["small"].credits, 30, "credit")
    r.WalletBody.model_validate(api.wallet(user))
    submitted = api.submit(user, "framing", 30, {"emulator": {"execution_ms": 300}})
    assert submitted.status_code == 202
    accepted = r.JobAccepted.model_validate(submitted.json())
    r.JobReceipt.model_validate(api.job(accepted.job_id))  # while running
    done = api.wait_job(accepted.job_id, ("completed",))
    receipt = r.JobReceipt.model_validate(done)
    assert receipt.charge == done["charge"] and receipt.runpod.execution_ms is not None
    assert r.EntriesPage.model_validate(api.entries(user)).entries
    assert r.Packs.model_validate({"packs": api.packs()}).packs
    quoted = api.http.post(f"{api.base}/v1/quotes", timeout=10, json={
        "type": "upscale", "params": {"duration_s": 30, "resolution": "1080p", "scale": 4}})
    r.QuoteAnswer.model_validate(quoted.json())
    created = api.create_topup(user, "small")
    assert created.status_code == 201
    r.TopupCreated.model_validate(created.json())
    other = api.submit(user, "framing", 30, {"emulator": {"execution_ms": 60_000}})
    cancelled = api.http.post(f"{api.base}/v1/jobs/{other.json()['job_id']}/cancel", timeout=10)
    assert cancelled.status_code == 202
    r.JobReceipt.model_validate(cancelled.json())
    api.wait_job(other.json()["job_id"], ("cancelled", "completed", "failed"))
    invalid = api.submit(user, "framing", -1)
    assert invalid.status_code == 422
    r.ErrorBody.model_validate(invalid.json())
    r.Health.model_validate(requests.get(f"{stack.receiver_url}/healthz", timeout=5).json())
    r.Readiness.model_validate(requests.get(f"{stack.receiver_url}/readyz", timeout=5).json())
