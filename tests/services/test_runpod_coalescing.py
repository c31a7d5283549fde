"""RunPod callbacks coalesced (issue 11; issue 15 case 8): repeated valid callbacks for
one job within ``GPUBILL_RUNPOD_COALESCE_S`` (2 s) cost one RunPod ``/status`` call;
a callback after the window (RunPod's own completion webhook) still refreshes and
settles the job. Counted on the RunPod stand-in's ground truth (``GET /_control/jobs``
``status_calls``) once the job is terminal (no task calls /status for it after that)."""
from __future__ import annotations

import secrets
from decimal import Decimal

import pytest
import requests

from ledger.db import transaction
from ledger.models import Job, JobStatus
from pricing import JobParams, charge, quote
from tests.factories import FundedWalletFactory
from tests.helpers import wait_for
from tests.model import rates
from tests.runpod_truth import runpod_jobs

pytestmark = pytest.mark.integration
SMALL = rates.packs()["small"]["credits"]  # a wallet as one top-up of pack small leaves it


def test_repeated_callbacks_within_the_window_cost_one_status_call(api, stack, sessions) -> None:
    cfg = stack.settings
    user = FundedWalletFactory.create(sessions=sessions, prefix="coal", credits=SMALL).user_id
    nonce = secrets.token_hex(8)
    r = api.submit(user, "framing", 30, {"nonce": nonce, "emulator": {"execution_ms": 6000}})
    job_id = r.json()["job_id"]
    job = wait_for(lambda: (j := api.job(job_id))["runpod"]["job_id"] and j, 30, "dispatched")
    runpod_id = job["runpod"]["job_id"]
    with transaction(sessions) as s:
        url = f"{cfg.public_base_url.rstrip('/')}/webhooks/runpod/{s.get(Job, job_id).webhook_token}"
    for _ in range(25):  # a storm of valid callbacks, well inside one window
        assert requests.post(url, json={"id": runpod_id, "status": "IN_PROGRESS"}, timeout=10).ok
    job = api.wait_job(job_id, tuple(JobStatus.TERMINAL), 60)
    [truth] = [t for t in runpod_jobs(cfg) if t["input"].get("nonce") == nonce]
    assert job["status"] == "completed"  # the completion webhook after the window refreshed
    assert job["charge"] == charge(quote("framing", JobParams(duration_s=Decimal(30))), truth["executed_ms"])
    with transaction(sessions) as s:
        polls = s.get(Job, job_id).status_polls
    # Each /status call: the storm's one, a silent-job poll, or the completion refresh.
    print(f"\n25 callbacks: {truth['status_calls']} /status calls ({polls} polls)")
    assert truth["status_calls"] <= 1 + polls + 1, (truth["status_calls"], polls)
