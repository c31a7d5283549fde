"""``Idempotency-Key`` on ``POST /v1/jobs``: the first answer is stored with a hash of the
body and replayed for the same key and body; another body is a 409; keys are scoped per
API key; 20 concurrent twins make one job and one hold."""
from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from ledger import api_keys
from ledger.db import transaction
from ledger.models import Hold, IdempotencyKey, Job, JobStatus
from tests.factories import FundedWalletFactory
from tests.helpers import Api, wait_for
from tests.model import rates

pytestmark = pytest.mark.integration
SMALL = rates.packs()["small"]["credits"]  # a wallet as one top-up of pack small leaves it
TERMINAL = tuple(JobStatus.TERMINAL)



def body(user: str, duration_s: float = 30, **input_: Any) -> dict[str, Any]:
    return {"user_id": user, "type": "framing",
            "params": {"duration_s": duration_s, "resolution": "1080p"},
            "input": {"emulator": {"execution_ms": 100}, **input_}}


def post(api: Api, payload: dict[str, Any] | str, key: str | None,
         api_key: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {api_key or api.cfg.api_key_values()[0]}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    if isinstance(payload, str):
        headers["Content-Type"] = "application/json"
        return requests.post(f"{api.base}/v1/jobs", data=payload, headers=headers, timeout=30)
    return requests.post(f"{api.base}/v1/jobs", json=payload, headers=headers, timeout=30)


def jobs_of(sessions, user: str) -> int:
    with transaction(sessions) as s:
        return s.scalar(select(func.count()).select_from(Job).where(Job.user_id == user))


def holds_of(sessions, user: str) -> int:
    with transaction(sessions) as s:
        return s.scalar(select(func.count()).select_from(Hold).where(Hold.user_id == user))


def test_same_key_and_body_replays_the_first_answer(api, sessions, invariants) -> None:
    user = FundedWalletFactory.create(sessions=sessions, prefix="i", credits=SMALL).user_id
    key = secrets.token_urlsafe(16)
    first = post(api, body(user), key)
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    job = api.wait_job(first.json()["job_id"], TERMINAL)
    # Same content, other key order and spacing: the canonical hash matches.
    reordered = ('{"input": {"emulator": {"execution_ms": 100}}, "type": "framing", '
                 f'"params": {{"resolution": "1080p", "duration_s": 30}}, "user_id": "{user}"}}')
    for again in (post(api, body(user), key), post(api, reordered, key)):
        assert again.status_code == 202 and again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
    assert jobs_of(sessions, user) == 1 and holds_of(sessions, user) == 1
    assert api.wallet(user)["balance"] == 500 - job["charge"] and api.wallet(user)["held"] == 0
    invariants()


def test_same_key_with_another_body_is_409(api, sessions, invariants) -> None:
    user = FundedWalletFactory.create(sessions=sessions, prefix="i", credits=SMALL).user_id
    key = secrets.token_urlsafe(16)
    first = post(api, body(user), key)
    assert first.status_code == 202
    other = post(api, body(user, duration_s=31), key)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert "different request body" in other.json()["error"]["message"]
    assert jobs_of(sessions, user) == 1
    api.wait_job(first.json()["job_id"], TERMINAL)
    invariants()


def test_twenty_concurrent_same_key_requests_make_one_job_and_one_hold(api, sessions, invariants) -> None:
    user = FundedWalletFactory.create(sessions=sessions, prefix="i", credits=SMALL).user_id
    key = secrets.token_urlsafe(16)
    payload = body(user)
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: post(api, payload, key), range(20)))
    assert [a.status_code for a in answers] == [202] * 20, [a.text for a in answers if a.status_code != 202]
    assert len({a.json()["job_id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 19
    job = api.wait_job(answers[0].json()["job_id"], TERMINAL)
    assert job["status"] == "completed"
    assert jobs_of(sessions, user) == 1 and holds_of(sessions, user) == 1
    assert api.wallet(user)["balance"] == 500 - job["charge"] and api.wallet(user)["held"] == 0
    invariants()


def test_first_402_is_the_stored_answer(api, sessions) -> None:
    """A refusal is an answer too (as at Stripe): the same key replays it even after a
    top-up; a new key is a new request."""
    user, key = f"broke-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    refused = post(api, body(user), key)
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "insufficient_funds"
    api.topup(user, "small")
    wait_for(lambda: api.wallet(user)["balance"] == 500, 20, "top-up")
    again = post(api, body(user), key)
    assert again.status_code == 402 and again.json() == refused.json()
    assert jobs_of(sessions, user) == 0
    fresh = post(api, body(user), secrets.token_urlsafe(16))
    assert fresh.status_code == 202
    api.wait_job(fresh.json()["job_id"], TERMINAL)


def test_keys_are_scoped_per_api_key(api, sessions, invariants) -> None:
    user = FundedWalletFactory.create(sessions=sessions, prefix="i", credits=SMALL).user_id
    key = secrets.token_urlsafe(16)
    with transaction(sessions) as s:
        other_key = api_keys.create(s, name="idempotency scope test", created_by="tests")
    a = post(api, body(user), key)
    b = post(api, body(user), key, api_key=other_key.key)
    assert (a.status_code, b.status_code) == (202, 202)
    assert a.json()["job_id"] != b.json()["job_id"]
    with transaction(sessions) as s:
        scopes = set(s.scalars(select(IdempotencyKey.scope).where(IdempotencyKey.key == key)))
    assert scopes == {"settings", other_key.id}
    for answer in (a, b):
        api.wait_job(answer.json()["job_id"], TERMINAL)
    invariants()


@pytest.mark.parametrize("bad", ["", "x" * 256, "has space", "ключ"])
def test_malformed_key_is_400_and_stores_nothing(api, sessions, bad: str) -> None:
    user = f"k-{secrets.token_hex(4)}"
    headers = {"Authorization": f"Bearer {api.cfg.api_key_values()[0]}",
               "Idempotency-Key": bad.encode().decode("latin-1")}
    answer = requests.post(f"{api.base}/v1/jobs", json=body(user), headers=headers, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_idempotency_key"
    assert jobs_of(sessions, user) == 0


def test_invalid_body_with_a_key_stores_no_answer(api, sessions) -> None:
    """Validation failures are not stored: the corrected request with the same key runs."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="i", credits=SMALL).user_id
    key = secrets.token_urlsafe(16)
    bad = post(api, {**body(user), "type": "karaoke"}, key)
    assert bad.status_code == 422
    good = post(api, body(user), key)
    assert good.status_code == 202 and "Idempotent-Replayed" not in good.headers
    api.wait_job(good.json()["job_id"], TERMINAL)
