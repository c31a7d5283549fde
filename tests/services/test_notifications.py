"""Signed outbound webhooks to the app about each terminal job state: written with the
terminal state, sent after commit, retried with backoff by Celery, at-least-once with a
unique event id, verifiable with Stripe's own ``WebhookSignature.verify_header``."""
from __future__ import annotations

import secrets

import pytest
import stripe
from sqlalchemy import select

from ledger.db import transaction
from ledger.models import JobStatus, Notification, NotificationStatus
from tests.factories import FundedWalletFactory
from tests.helpers import Api, wait_for
from tests.model import rates
from tests.stacks import frozen_worker

pytestmark = pytest.mark.integration
SMALL = rates.packs()["small"]["credits"]  # a wallet as one top-up of pack small leaves it
TERMINAL = tuple(JobStatus.TERMINAL)



def submit(api: Api, user: str, emulator: dict, job_type: str = "framing", duration_s: float = 30,
           **params) -> str:
    r = api.submit(user, job_type, duration_s, {"nonce": secrets.token_hex(4), "emulator": emulator}, **params)
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def delivered(sink, job_id: str):
    return wait_for(lambda: [d for d in sink.for_job(job_id) if d.status == 200], 30,
                    f"notification of {job_id}")


def row(sessions, job_id: str) -> Notification:
    with transaction(sessions) as s:
        return s.scalars(select(Notification).where(Notification.job_id == job_id)).one()


def settled_row(sessions, job_id: str) -> Notification:
    """The row once the worker has recorded the delivery: the sink sees the 2xx before the
    worker's transaction that marks the row sent commits."""
    return wait_for(lambda: (n := row(sessions, job_id)).status != NotificationStatus.PENDING and n,
                    30, f"notification row of {job_id} settled")


def test_completed_job_notification_is_signed_stripe_style(api, stack, sessions, notify_sink, invariants) -> None:
    user = FundedWalletFactory.create(sessions=sessions, prefix="n", credits=SMALL).user_id
    job_id = submit(api, user, {"execution_ms": 200})
    job = api.wait_job(job_id, TERMINAL)
    [delivery] = delivered(notify_sink, job_id)
    secret = stack.settings.notify_secret.get_secret_value()
    assert delivery.signature.startswith("t=") and ",v1=" in delivery.signature
    assert stripe.WebhookSignature.verify_header(delivery.raw.decode(), delivery.signature, secret, 300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(delivery.raw.decode(), delivery.signature, "whsec_wrong", 300)
    event = delivery.event
    assert event["type"] == "job.completed" and event["id"].startswith("evt_")
    obj = event["data"]["object"]
    assert (obj["job_id"], obj["status"], obj["charge"], obj["released"]) == (
        job_id, "completed", job["charge"], job["released"])
    stored = settled_row(sessions, job_id)
    assert (stored.id, stored.status, stored.attempts) == (event["id"], NotificationStatus.SENT, 1)
    invariants()


def test_failed_delivery_is_retried_with_the_same_event_id(api, sessions, notify_sink, invariants) -> None:
    """The app answers 500 twice: Celery retries (backoff + jitter) until a 2xx; every
    attempt carries the same event id, so the app can deduplicate (at-least-once)."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="n", credits=SMALL).user_id
    job_id = submit(api, user, {"execution_ms": 5000, "delay_ms": 0})
    notify_sink.fail_first[job_id] = 2
    api.wait_job(job_id, TERMINAL, 30)
    delivered(notify_sink, job_id)
    attempts = notify_sink.for_job(job_id)
    assert [d.status for d in attempts] == [500, 500, 200]
    assert len({d.event["id"] for d in attempts}) == 1
    stored = settled_row(sessions, job_id)
    assert stored.status == NotificationStatus.SENT and stored.attempts == 3
    assert stored.last_error == "HTTP 500"  # the last failure is kept for audit
    invariants()


def test_each_terminal_state_sends_its_event_type(api, sessions, stack, notify_sink, invariants) -> None:
    """failed → job.failed; timed_out → job.failed (object.status says timed_out);
    rejected → job.rejected; every event id unique."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="n", credits=SMALL).user_id
    failed = submit(api, user, {"fail": "decoder crashed", "execution_ms": 100})
    timed_out = submit(api, user, {"execution_ms": 60_000}, duration_s=1)  # funds 6 GPU-s
    for job_id in (failed, timed_out):
        api.wait_job(job_id, TERMINAL, 30)
    # 500 credits; each upscale 4× of 300 s holds 450: the second is rejected
    poor = FundedWalletFactory.create(sessions=sessions, prefix="n", credits=SMALL).user_id
    with frozen_worker(stack):
        big = [submit(api, poor, {"execution_ms": 100}, "upscale", 300, scale=4) for _ in range(2)]
    ends = {j: api.wait_job(j, TERMINAL, 30)["status"] for j in big}
    rejected = next(j for j, status in ends.items() if status == "rejected")
    seen = {}
    for job_id in (failed, timed_out, rejected):
        event = delivered(notify_sink, job_id)[0].event
        seen[job_id] = (event["type"], event["data"]["object"]["status"], event["id"])
    assert seen[failed][:2] == ("job.failed", "failed")
    assert seen[timed_out][:2] == ("job.failed", "timed_out")
    assert seen[rejected][:2] == ("job.rejected", "rejected")
    assert len({v[2] for v in seen.values()}) == 3
    invariants()
