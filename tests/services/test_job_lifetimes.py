"""Job lifetimes follow from the quote (issue 11 case 2): a job the quote funds for
more than an hour is not killed by RunPod's ttl nor by our hold's clock, and what
RunPod's limits cannot run is refused at quote time."""
from __future__ import annotations

import secrets
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from ledger.db import transaction
from ledger.models import Hold, Job, JobStatus, utcnow
from pricing import JobParams, quote
from tests.factories import FundedWalletFactory
from tests.helpers import wait_for
from tests.model import rates as model
from tests.runpod_truth import runpod_jobs_for

pytestmark = pytest.mark.integration
LARGE = model.packs()["large"]["credits"]  # a wallet as one top-up of pack large leaves it
SMALL = model.packs()["small"]["credits"]  # a wallet as one top-up of pack small leaves it


def test_long_job_gets_lifetimes_from_its_quote_and_is_charged(api, stack, sessions, invariants) -> None:
    """Upscale 4× of a 600 s 2160p clip: 600/60 × 120 GPU-s × 4 (2160p) × 1 (4×) = 4,800
    estimated, × 1.5 safety = 7,200 funded GPU-seconds (2 h). By the rate card:
    executionTimeout 7,200,000 ms; ttl = (900 queue + 7,200 + 600 result) s = 8,700,000
    ms; hold life = 8,700 + 300 = 9,000 s. Computed by hand here, not by the code."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="long", credits=LARGE).user_id
    nonce = secrets.token_hex(8)
    r = api.submit(user, "upscale", 600, {"nonce": nonce, "emulator": {"execution_ms": 5000}},
                   resolution="2160p", scale=4)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    q = quote("upscale", JobParams(duration_s=Decimal(600), resolution="2160p", scale=4))
    assert (q.max_gpu_seconds, q.hold_credits) == (7200, 3600)
    job = api.wait_job(job_id, tuple(JobStatus.TERMINAL), 60)
    assert job["status"] == "completed", job

    [ran] = runpod_jobs_for(stack.settings, nonce)  # one RunPod job, as the stand-in saw it
    assert ran["policy"] == {"executionTimeout": 7_200_000, "ttl": 8_700_000}
    assert ran["state"] == "COMPLETED" and ran["id"] == job["runpod"]["job_id"]
    # Charged the measured time at 0.5 credit per GPU-second, rounded up (rate card).
    assert job["charge"] == max(2, -(-ran["executed_ms"] // 2000))
    assert api.wallet(user)["balance"] == 4000 - job["charge"]
    with transaction(sessions) as s:
        row = s.get(Job, job_id)
        hold = s.scalars(select(Hold).where(Hold.job_id == job_id)).one()
        life = hold.expires_at - row.held_at
    assert abs(life - timedelta(seconds=9000)) < timedelta(seconds=2), life
    invariants()



def test_hold_expiring_after_runpod_completed_charges_the_measured_time(api, stack, sessions,
                                                                        invariants) -> None:
    """Issue 11 case 1 through the stack: RunPod completed the job but no callback came
    (skipped) and the poller is held off; then the hold passes ``expires_at``. The
    expiry sweep's task reads ``/status`` first and settles from it: completed, charged
    the rate card's price of the measured executionTime (tests/model, from the
    stand-in's ground truth), output kept — not released as expired."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="exp", credits=SMALL).user_id
    nonce = secrets.token_hex(8)
    r = api.submit(user, "framing", 30, {"nonce": nonce, "emulator": {"execution_ms": 1200,
                                                                      "skip_webhook": True}})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    wait_for(lambda: api.job(job_id)["status"] in ("dispatched", "in_progress"), 20, "on RunPod")
    with transaction(sessions) as s:  # no poll for an hour: only the expiry can settle it
        s.execute(update(Job).where(Job.id == job_id).values(next_poll_at=utcnow() + timedelta(hours=1)))
    [ran] = wait_for(lambda: [t for t in runpod_jobs_for(stack.settings, nonce) if t["state"] == "COMPLETED"],
                     20, "RunPod completed it")
    assert api.job(job_id)["status"] in ("dispatched", "in_progress")  # we do not know yet
    with transaction(sessions) as s:  # ... and our clock runs out just after
        s.execute(update(Hold).where(Hold.job_id == job_id).values(expires_at=utcnow() - timedelta(seconds=1)))
    job = api.wait_job(job_id, tuple(JobStatus.TERMINAL), 60)  # beat's sweep, then the task
    expected = model.charge(model.quote("framing", 30), ran["executed_ms"])
    assert (job["status"], job["charge"]) == ("completed", expected), job
    assert job["output"]["output_url"].startswith("s3://")
    assert api.wallet(user)["balance"] == 500 - expected and api.wallet(user)["held"] == 0
    invariants()
