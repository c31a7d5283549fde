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


def test_parameters_are_documented_as_strictly_as_they_are_checked(spec, api) -> None:
    """Issue 13, schemathesis findings: the spec allowed inputs the code refuses (any
    ``user_id`` in the path, any ``Idempotency-Key``, any ``limit``, any pack or plan
    name, any string as ``duration_s``), and the code took inputs the spec forbids (an
    unknown query parameter; ``duration_s`` strings such as ``"1e3"``). Expected names
    come from the TOML files (tests/model), not from the code."""
    import tomllib
    from pathlib import Path

    from tests.model import rates

    def params(path: str, method: str) -> dict[str, dict]:
        return {p["name"]: p["schema"] for p in spec["paths"][path][method]["parameters"]}

    schemas = spec["components"]["schemas"]
    assert params("/v1/wallets/{user_id}", "get")["user_id"]["pattern"] == "^[A-Za-z0-9_.:@-]{1,64}$"
    assert params("/v1/jobs", "post")["Idempotency-Key"]["pattern"] == r"^[\x21-\x7e]{1,255}$"
    # A Checkout route hashes any key into Stripe's (a 300-character one works there).
    assert params("/v1/topups", "post")["Idempotency-Key"] == {"type": "string"}
    entries = params("/v1/wallets/{user_id}/entries", "get")
    assert (entries["limit"]["minimum"], entries["limit"]["maximum"]) == (1, 200)
    assert schemas["TopupRequest"]["properties"]["pack"]["enum"] == sorted(rates.packs())
    plans = tomllib.loads((Path(rates.PRICING) / "plans.toml").read_text())["plans"]
    assert schemas["SubscriptionRequest"]["properties"]["plan"]["enum"] == sorted(plans)
    duration = schemas["JobParams"]["properties"]["duration_s"]["anyOf"]
    assert duration[1] == {"type": "string", "pattern": r"^[0-9]{1,5}(\.[0-9]{1,3})?$"}

    r = api.http.get(f"{api.base}/v1/wallets/someone/entries", params={"limt": "10"}, timeout=10)
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "limt", r.text
    for text, status in (("30", 200), ("30.125", 200), ("1e3", 422), (" 5", 422), ("5.", 422), ("0x10", 422)):
        r = api.http.post(f"{api.base}/v1/quotes", json={"type": "framing", "params": {"duration_s": text}},
                          timeout=10)
        assert r.status_code == status, (text, r.text)
