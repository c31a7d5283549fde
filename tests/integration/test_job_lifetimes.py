"""Job lifetimes follow from the quote (issue 11 case 2): a job the quote funds for
more than an hour is not killed by RunPod's ttl nor by our hold's clock, and what
RunPod's limits cannot run is refused at quote time."""
from __future__ import annotations

import secrets
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from ledger.db import transaction
from ledger.models import Hold, Job, JobStatus
from pricing import JobParams, quote
from tests.runpod_truth import runpod_jobs_for

pytestmark = pytest.mark.integration


def test_long_job_gets_lifetimes_from_its_quote_and_is_charged(api, stack, sessions, invariants) -> None:
    """Upscale 4× of a 600 s 2160p clip: 600/60 × 120 GPU-s × 4 (2160p) × 1 (4×) = 4,800
    estimated, × 1.5 safety = 7,200 funded GPU-seconds (2 h). By the rate card:
    executionTimeout 7,200,000 ms; ttl = (900 queue + 7,200 + 600 result) s = 8,700,000
    ms; hold life = 8,700 + 300 = 9,000 s. Computed by hand here, not by the code."""
    user = api.funded_user("long", pack="large")
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

