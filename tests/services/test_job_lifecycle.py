"""Every path a job can take besides plain success, through the real receiver, worker,
beat and RunPod stand-in: cancel (before dispatch, running, by policy, twice, after
the end), hold expiry, lost results, dispatch retries and refusals, silent-job backoff,
duplicate and misdirected RunPod webhooks. Each ends in one money outcome."""
from __future__ import annotations

import dataclasses
import secrets
from datetime import timedelta
from typing import Any

import pytest
import requests
import runpod
from runpod.endpoint.runner import RunPodClient
from sqlalchemy import func, select, update

from base import queues
from ledger.db import transaction
from ledger.models import Hold, HoldStatus, Job, JobStatus, LedgerTransaction, utcnow
from pricing import JobParams, quote
from tests.factories import FundedWalletFactory, JobFactory
from tests.helpers import Api, wait_for
from tests.model import rates
from tests.runpod_truth import runpod_jobs_for
from webhook_receiver.tokens import webhook_token

pytestmark = pytest.mark.integration
SMALL = rates.packs()["small"]["credits"]  # a wallet as one top-up of pack small leaves it
TERMINAL = tuple(JobStatus.TERMINAL)
RUNNING = ("dispatched", "in_progress")



def untouched(api: Api, user: str) -> dict[str, Any]:
    return {"user_id": user, "balance": 500, "held": 0, "available": 500, "status": "active"}


def submit(api: Api, user: str, emulator: dict[str, Any], job_type: str = "framing",
           duration_s: float = 30) -> str:
    r = api.submit(user, job_type, duration_s, {"nonce": secrets.token_hex(4), "emulator": emulator})
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def cancel(api: Api, job_id: str) -> requests.Response:
    return api.http.post(f"{api.base}/v1/jobs/{job_id}/cancel", timeout=10)


def row(sessions, job_id: str) -> Job:
    with transaction(sessions) as s:
        return s.get(Job, job_id)


def runpod_status(stack, job: dict[str, Any]) -> str:
    cfg = stack.settings
    runpod.endpoint_url_base = cfg.runpod_base_url
    client = RunPodClient(api_key=cfg.runpod_api_key.get_secret_value())
    return client.get(f"gpubill-framing/status/{job['runpod']['job_id']}")["status"]


def hold_of(sessions, job_id: str) -> Hold:
    with transaction(sessions) as s:
        return s.scalars(select(Hold).where(Hold.job_id == job_id)).one()


def captures(sessions, job_id: str) -> int:
    with transaction(sessions) as s:
        return s.scalar(select(func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.ref == job_id, LedgerTransaction.kind == "capture"))


# ------------------------------------------------------------------------------ cancel

def test_cancel_before_dispatch_releases_and_never_runs(api, sessions, invariants) -> None:
    """The job is held while /run keeps timing out (scripted): a cancel releases the
    hold at once, and the dispatch retry finds it no longer held."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="l", credits=SMALL).user_id
    job_id = submit(api, user, {"run_errors": ["timeout", "timeout", "timeout"]})
    wait_for(lambda: api.job(job_id)["status"] == "held", 20, "held")
    answer = cancel(api, job_id)
    assert answer.status_code == 202 and answer.json()["stop_reason"] == "cancel"
    job = api.wait_job(job_id, TERMINAL, 20)
    assert (job["status"], job["charge"], job["released"]) == ("cancelled", 0, job["quote"]["hold"])
    assert job["runpod"]["job_id"] is None and "cancelled" in job["timestamps"]
    assert api.wallet(user) == untouched(api, user)
    assert hold_of(sessions, job_id).status == HoldStatus.RELEASED
    again = cancel(api, job_id)
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"
    assert api.wallet(user) == untouched(api, user)
    invariants()


def test_cancel_running_job_charges_measured_execution_time(api, stack, sessions, invariants) -> None:
    """Default policy (rate card ``cancel_policy = "charge_execution"``): RunPod /cancel,
    then capture the price of the measured executionTime; the rest is released."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="l", credits=SMALL).user_id
    job_id = submit(api, user, {"never_finish": True, "delay_ms": 0})
    wait_for(lambda: api.job(job_id)["status"] == "in_progress", 20, "in progress")
    wait_for(lambda: runpod_status(stack, api.job(job_id)) == "IN_PROGRESS", 10, "running on RunPod")
    first, second = cancel(api, job_id), cancel(api, job_id)  # twice: changes nothing
    # The second is accepted while the stop is under way, or 409 once the worker has
    # already settled the cancel (a race the worker may win): one capture either way.
    assert (first.status_code, second.status_code) in {(202, 202), (202, 409)}
    job = api.wait_job(job_id, TERMINAL, 20)
    assert job["status"] == "cancelled", job
    assert runpod_status(stack, job) == "CANCELLED"
    expected = max(1, -(-job["runpod"]["execution_ms"] // 2000))  # ceil(ms/1000 × 0.5)
    assert job["charge"] == expected and job["released"] == job["quote"]["hold"] - expected
    assert captures(sessions, job_id) == 1
    assert api.wallet(user) == {"user_id": user, "balance": 500 - expected, "held": 0,
                                "available": 500 - expected, "status": "active"}
    assert cancel(api, job_id).status_code == 409
    invariants()


def test_cancel_running_job_under_free_policy_charges_nothing(api, stack, sessions, invariants) -> None:
    """A job priced by a card whose cancel policy is ``free`` (frozen on the job at
    request time) is released whole when cancelled while running."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="l", credits=SMALL).user_id
    q = dataclasses.replace(quote("framing", JobParams(duration_s=30)), cancel_policy="free")
    job_id = JobFactory.create(sessions=sessions, user_id=user, params={"duration_s": 30, "resolution": "1080p"},
                               job_input={"emulator": {"never_finish": True, "delay_ms": 0}}, quote=q,
                               token_secret=stack.settings.runpod_token_secret.get_secret_value()).id
    with transaction(sessions) as s:  # stored but never published: the outbox sweeper runs it
        s.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow() - timedelta(seconds=60)))
    wait_for(lambda: api.job(job_id)["status"] == "in_progress", 20, "in progress")
    assert cancel(api, job_id).status_code == 202
    job = api.wait_job(job_id, TERMINAL, 20)
    assert (job["status"], job["charge"], job["released"]) == ("cancelled", 0, q.hold_credits)
    assert job["runpod"]["execution_ms"] is not None  # measured, recorded, not billed
    assert captures(sessions, job_id) == 0
    assert api.wallet(user) == untouched(api, user)
    invariants()


def test_cancel_unknown_or_finished_job(api, sessions, invariants) -> None:
    user = FundedWalletFactory.create(sessions=sessions, prefix="l", credits=SMALL).user_id
    assert cancel(api, "job_" + secrets.token_hex(16)).status_code == 404
    job_id = submit(api, user, {"execution_ms": 100})
    job = api.wait_job(job_id, TERMINAL)
    answer = cancel(api, job_id)
    assert answer.status_code == 409 and "completed" in answer.json()["error"]["message"]
    assert api.job(job_id)["charge"] == job["charge"]
    assert api.wallet(user)["balance"] == 500 - job["charge"]
    invariants()


# ------------------------------------------------------------------ expiry, poll backoff

def test_silent_job_polls_back_off_then_expired_hold_stops_it(api, stack, sessions, invariants) -> None:
    """A never-finishing job: beat polls it with growing gaps (silent_after_s × 2ⁿ);
    once its hold passes ``expires_at`` (DB time) the sweep cancels the RunPod job,
    releases the hold as expired, and the job ends ``expired``."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="l", credits=SMALL).user_id
    job_id = submit(api, user, {"never_finish": True, "delay_ms": 0})
    wait_for(lambda: row(sessions, job_id).status_polls >= 2, 30, "two polls")
    polled = row(sessions, job_id)
    gap = (polled.next_poll_at - polled.last_checked_at).total_seconds()
    # silent_after_s = 2 in the test stack: the 2nd poll schedules the 3rd 2 × 2² = 8 s later.
    assert gap > 2 * 2, f"poll gap {gap}s does not back off"
    assert api.job(job_id)["status"] == "in_progress"

    with transaction(sessions) as s:  # the hold runs out (its life is the ttl plus an allowance)
        s.execute(update(Hold).where(Hold.job_id == job_id).values(expires_at=utcnow() - timedelta(seconds=1)))
    job = api.wait_job(job_id, TERMINAL, 20)
    assert (job["status"], job["charge"], job["released"]) == ("expired", 0, job["quote"]["hold"])
    assert job["stop_reason"] == "expire" and "expired" in job["timestamps"]
    assert runpod_status(stack, job) == "CANCELLED"
    assert hold_of(sessions, job_id).status == HoldStatus.EXPIRED
    assert hold_of(sessions, job_id).close_key == f"job:{job_id}:expire"
    assert api.wallet(user) == untouched(api, user)
    invariants()


# ------------------------------------------------------------------------- lost

def test_result_forgotten_by_runpod_is_lost_released_and_flagged(api, sessions, invariants) -> None:
    """RunPod forgets results (30 min after completion, or at ttl; scripted here after
    0.6 s) and no webhook came: the poller's /status gets 404 → ``lost``, released,
    flagged for operators."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="l", credits=SMALL).user_id
    job_id = submit(api, user, {"execution_ms": 100, "skip_webhook": True, "forget_after_s": 0.6})
    job = api.wait_job(job_id, TERMINAL, 30)
    assert (job["status"], job["charge"], job["released"]) == ("lost", 0, job["quote"]["hold"])
    assert job["flagged"] is True and "404" in job["error"]
    assert api.wallet(user) == untouched(api, user)
    invariants()


def test_expiry_of_a_job_runpod_already_forgot_is_lost_and_flagged(api, stack, sessions, invariants) -> None:
    """Expiry racing RunPod's retention (found by the seeded simulation, seed 3, in CI):
    RunPod ran the job to COMPLETED, no callback reached us, and RunPod forgot it before
    our hold ran out. Expiry's /status then answers 404: there is nothing to bill on, and
    GPU time ran that we cannot see. The job ends ``lost`` and flagged for operators, as
    the poller's 404 ends it — not ``expired``, which would hide that. Beat is paused, so
    the expiry published here is the only thing that can move the job."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="l", credits=SMALL).user_id
    nonce = secrets.token_hex(4)
    with stack.paused("beat"):
        # Forgotten 3 s after submission: time for a loaded machine to record the
        # dispatch first (the job must be running on our side when its hold expires).
        r = api.submit(user, "framing", 30, {"nonce": nonce, "emulator": {
            "execution_ms": 50, "skip_webhook": True, "forget_after_s": 3}})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        api.wait_job(job_id, RUNNING, 20)
        [ran] = wait_for(lambda: [t for t in runpod_jobs_for(stack.settings, nonce) if t["deleted"]] or None,
                         20, "RunPod forgot the job")
        assert ran["state"] == "COMPLETED" and api.job(job_id)["status"] in RUNNING
        with transaction(sessions) as s:  # the hold runs out
            s.execute(update(Hold).where(Hold.job_id == job_id).values(expires_at=utcnow() - timedelta(seconds=1)))
        producer = queues.producer(stack.settings.broker_url)
        try:
            assert queues.enqueue(producer, queues.EXPIRE, job_id)
        finally:
            producer.close()
        job = api.wait_job(job_id, TERMINAL, 30)
    hold = rates.quote("framing", 30).hold  # the rate card's model, not the job's columns
    assert (job["status"], job["charge"], job["released"]) == ("lost", 0, hold), job
    assert job["flagged"] is True and "404" in job["error"]
    assert api.wallet(user) == untouched(api, user)
    invariants()


# -------------------------------------------------------------- RunPod failures

def test_dispatch_retries_429_5xx_and_timeouts_then_runs(api, sessions, invariants) -> None:
    user = FundedWalletFactory.create(sessions=sessions, prefix="l", credits=SMALL).user_id
    job_id = submit(api, user, {"run_errors": [429, "timeout", 503], "execution_ms": 200})
    job = api.wait_job(job_id, TERMINAL, 40)
    assert job["status"] == "completed" and job["charge"] >= 1, job
    assert row(sessions, job_id).dispatch_attempts == 4
    assert api.wallet(user)["balance"] == 500 - job["charge"] and api.wallet(user)["held"] == 0
    invariants()


def test_dispatch_gives_up_after_bounded_retries(api, sessions, invariants) -> None:
    """GPUBILL_DISPATCH_MAX_RETRIES = 3 in the test stack: four 429s in a row → failed,
    hold released, never ran."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="l", credits=SMALL).user_id
    job_id = submit(api, user, {"run_errors": [429, 429, 429, 429]})
    job = api.wait_job(job_id, TERMINAL, 40)
    assert (job["status"], job["charge"], job["released"]) == ("failed", 0, job["quote"]["hold"])
    assert "gave up after 4 attempts" in job["error"] and "429" in job["error"]
    assert job["runpod"]["job_id"] is None
    assert api.wallet(user) == untouched(api, user)
    invariants()


def test_status_5xx_is_retried_and_the_job_settles(api, sessions, invariants) -> None:
    user = FundedWalletFactory.create(sessions=sessions, prefix="l", credits=SMALL).user_id
    job_id = submit(api, user, {"execution_ms": 200, "status_errors": [500, 502]})
    job = api.wait_job(job_id, TERMINAL, 40)
    assert job["status"] == "completed" and job["charge"] >= 1
    assert api.wallet(user)["balance"] == 500 - job["charge"] and api.wallet(user)["held"] == 0
    invariants()


def test_webhook_sent_twice_charges_once(api, sessions, notify_sink, invariants) -> None:
    user = FundedWalletFactory.create(sessions=sessions, prefix="l", credits=SMALL).user_id
    job_id = submit(api, user, {"execution_ms": 200, "webhook_twice": True})
    job = api.wait_job(job_id, TERMINAL)
    assert job["status"] == "completed"
    assert captures(sessions, job_id) == 1
    assert api.wallet(user)["balance"] == 500 - job["charge"]
    wait_for(lambda: notify_sink.for_job(job_id), 20, "notification")
    assert len({d.event["id"] for d in notify_sink.for_job(job_id)}) == 1
    invariants()


def test_webhook_for_job_x_with_job_y_token_never_touches_x(api, stack, sessions, invariants) -> None:
    """The token names the job; the body is never trusted. A callback claiming X's
    RunPod id and a COMPLETED status, sent to Y's URL, re-fetches Y only."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="l", credits=SMALL).user_id
    x = submit(api, user, {"never_finish": True})
    wait_for(lambda: api.job(x)["status"] in RUNNING, 20, "x running")
    y = submit(api, user, {"execution_ms": 100})
    api.wait_job(y, TERMINAL)
    x_before = api.job(x)
    y_token = webhook_token(stack.settings.runpod_token_secret.get_secret_value(), y)
    answer = requests.post(f"{api.base}/webhooks/runpod/{y_token}", timeout=5, json={
        "id": x_before["runpod"]["job_id"], "status": "COMPLETED", "executionTime": 1000})
    assert answer.status_code == 200
    wrong = requests.post(f"{api.base}/webhooks/runpod/{secrets.token_hex(32)}", timeout=5,
                          json={"id": x_before["runpod"]["job_id"], "status": "COMPLETED"})
    assert wrong.status_code == 404
    x_after = api.job(x)
    assert x_after["status"] in RUNNING and x_after["charge"] is None
    assert hold_of(sessions, x).status == HoldStatus.OPEN
    assert api.wallet(user)["held"] == x_before["quote"]["hold"]
    assert cancel(api, x).status_code == 202  # clean up: stop the never-ending job
    api.wait_job(x, TERMINAL, 20)
    invariants()
