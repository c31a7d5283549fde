"""Bad input to the receiver: a clear 4xx JSON error and nothing changed — never a 5xx."""
from __future__ import annotations

import json
import secrets
import time

import pytest
import requests
from sqlalchemy import func, select

from emulators.stripe import events as se
from ledger.db import transaction
from ledger.models import Job, StripeEvent
from tests.factories import EventFactory

pytestmark = pytest.mark.integration



def counts(sessions) -> tuple[int, int]:
    with transaction(sessions) as s:
        return (s.scalar(select(func.count()).select_from(Job)),
                s.scalar(select(func.count()).select_from(StripeEvent)))


def error(r: requests.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()["error"]


def test_jobs_need_a_valid_api_key(api, sessions) -> None:
    before = counts(sessions)
    body = {"user_id": "x", "type": "framing", "params": {"duration_s": 30}}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        r = requests.post(f"{api.base}/v1/jobs", json=body, headers=headers, timeout=5)
        assert error(r, 401)["code"] == "unauthorized"
    assert error(requests.get(f"{api.base}/v1/wallets/x", timeout=5), 401)["code"] == "unauthorized"
    assert counts(sessions) == before


@pytest.mark.parametrize("body,field", [
    ({"type": "framing", "params": {"duration_s": 30}}, "user_id"),
    ({"user_id": "a b", "type": "framing", "params": {"duration_s": 30}}, "user_id"),
    ({"user_id": "u", "type": "render", "params": {"duration_s": 30}}, "type"),
    ({"user_id": "u", "type": "framing", "params": {"duration_s": -5}}, "params.duration_s"),
    ({"user_id": "u", "type": "framing", "params": {"duration_s": "long"}}, "params.duration_s"),
    ({"user_id": "u", "type": "framing", "params": {"duration_s": 30, "resolution": "8k"}}, "params.resolution"),
    ({"user_id": "u", "type": "upscale", "params": {"duration_s": 30}}, "params.scale"),
    ({"user_id": "u", "type": "framing", "params": {"duration_s": 30}, "amount": 1}, "amount"),
    ({"user_id": "u", "type": "framing", "params": {"duration_s": 30}, "input": []}, "input"),
])
def test_invalid_job_is_422_with_field_errors(api, sessions, body, field) -> None:
    before = counts(sessions)
    err = error(api.http.post(f"{api.base}/v1/jobs", json=body, timeout=5), 422)
    assert err["code"] == "invalid_request"
    assert field in [f["field"] for f in err["fields"]], err
    assert counts(sessions) == before


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1,2]", b"\xff\xfe", b'{"user_id": '])
def test_malformed_job_body_is_400(api, sessions, raw) -> None:
    before = counts(sessions)
    r = api.http.post(f"{api.base}/v1/jobs", data=raw, headers={"Content-Type": "application/json"}, timeout=5)
    assert error(r, 400)["code"] == "invalid_json"
    assert counts(sessions) == before


def test_oversized_body_is_refused_early(api, sessions) -> None:
    """A body over the limit is refused from its Content-Length, before it is read: the
    client sends only the headers and still gets its 413."""
    import http.client
    from urllib.parse import urlsplit

    before = counts(sessions)
    url = urlsplit(api.base)
    for path in ("/v1/jobs", "/webhooks/stripe"):
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
        conn.putrequest("POST", path)
        conn.putheader("Authorization", api.http.headers["Authorization"])
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(2 * 1024 * 1024))
        conn.endheaders()
        r = conn.getresponse()
        assert r.status == 413, (path, r.status)
        assert json.loads(r.read())["error"]["code"] == "request_entity_too_large"
        conn.close()
    assert counts(sessions) == before


def test_unknown_job_is_404(api) -> None:
    assert error(api.http.get(f"{api.base}/v1/jobs/job_nope", timeout=5), 404)["code"] == "not_found"


def test_unknown_wallet_reads_as_zeros(api) -> None:
    user = f"nobody-{secrets.token_hex(4)}"
    assert api.wallet(user) == {"user_id": user, "balance": 0, "held": 0, "available": 0, "status": "active"}


@pytest.mark.parametrize("case", ["missing", "forged", "wrong_secret", "stale", "future", "altered", "garbage"])
def test_bad_stripe_signatures_are_400_and_store_nothing(api, sessions, case) -> None:
    before = counts(sessions)
    body = EventFactory()  # a paid checkout.session.completed (pack small)
    payload, headers = se.signed(body, api.secret)
    if case == "missing":
        headers.pop("Stripe-Signature")
    elif case == "forged":
        headers["Stripe-Signature"] = f"t={int(time.time())},v1={secrets.token_hex(32)}"
    elif case == "wrong_secret":
        payload, headers = se.signed(body, "whsec_someone_else")
    elif case == "stale":
        payload, headers = se.signed(body, api.secret, timestamp=int(time.time()) - 301)
    elif case == "future":
        payload, headers = se.signed(body, api.secret, timestamp=int(time.time()) + 3600)
    elif case == "altered":
        payload = payload.replace(b'"livemode":false', b'"livemode":true', 1)
    elif case == "garbage":
        headers["Stripe-Signature"] = "garbage"
    err = error(api.post_stripe_raw(payload, headers), 400)
    assert err["code"] in ("missing_signature", "invalid_signature")
    assert counts(sessions) == before


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"id": "evt_1"}',
                                 b'{"id": "nope", "type": "x", "livemode": false, "data": {"object": {}}}'])
def test_signed_but_malformed_events_are_400(api, sessions, raw) -> None:
    before = counts(sessions)
    headers = {"Stripe-Signature": se.stripe.WebhookSignature.generate_signature_header(raw.decode(), api.secret)}
    assert error(api.post_stripe_raw(raw, headers), 400)["code"] == "invalid_payload"
    assert counts(sessions) == before


def test_duplicate_stripe_delivery_is_200_and_stored_once(api, sessions) -> None:
    body = EventFactory()  # a paid checkout.session.completed (pack small)
    first, second = api.post_event(body), api.post_event(body)
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.json()["duplicate"], second.json()["duplicate"]) == (False, True)
    with transaction(sessions) as s:
        stored = s.get(StripeEvent, body["id"])
        assert json.loads(stored.payload) == body  # the raw body, every field kept


def test_healthz(api) -> None:
    assert requests.get(f"{api.base}/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{api.base}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "database": "ok", "migrations": "ok", "broker": "ok"}
