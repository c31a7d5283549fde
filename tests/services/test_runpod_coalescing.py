"""RunPod callbacks coalesced (issue 11; issue 15 case 8; issue 17): /status reads of one
job are throttled to one per ``GPUBILL_RUNPOD_COALESCE_S`` (2 s), leading edge first —
a storm of valid callbacks costs the first callback's read plus one at its window's end;
a callback after the window (RunPod's own completion webhook) still refreshes and
settles the job. Counted on the RunPod stand-in's ground truth (``GET /_control/jobs``
``status_calls``) once the job is terminal (no task calls /status for it after that)."""
from __future__ import annotations

import secrets
from datetime import timedelta
from decimal import Decimal

import pytest
import requests

from ledger.db import transaction
from ledger.models import Job, JobStatus, utcnow
from pricing import JobParams, charge, quote
from services import settlement
from tests.factories import FundedWalletFactory, JobFactory
from tests.helpers import wait_for
from tests.model import rates
from tests.runpod_truth import runpod_jobs

pytestmark = pytest.mark.integration
SMALL = rates.packs()["small"]["credits"]  # a wallet as one top-up of pack small leaves it


def test_a_storm_of_callbacks_costs_two_status_calls_not_one_each(api, stack, sessions) -> None:
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
    # Each /status call: the storm's leading and trailing reads, a silent-job poll, or
    # the completion refresh (27 without coalescing).
    print(f"\n25 callbacks: {truth['status_calls']} /status calls ({polls} polls)")
    assert truth["status_calls"] <= 2 + polls + 1, (truth["status_calls"], polls)


# --- the throttle itself (issue 17: leading edge, so a lone callback settles at once) ----
WINDOW = 2.0


def _due_in(sessions, job_id: str, seconds: float | None) -> None:
    """Set the job's quiet window to end ``seconds`` from now (None: no window open),
    as a read made ``WINDOW − seconds`` ago left it."""
    with transaction(sessions) as s:
        s.get_one(Job, job_id).refresh_due_at = None if seconds is None else utcnow() + timedelta(seconds=seconds)


def _delay(sessions, job_id: str) -> float | None:
    """Seconds a callback's refresh waits before reading /status; None: no read of its own."""
    plan = settlement.plan_refresh(sessions, job_id, WINDOW)
    if plan is not None:
        assert plan[0][1] == f"rp-{job_id}"  # the RunPod job the factory dispatched
    return None if plan is None else plan[1]


def test_the_first_callback_reads_now_and_the_next_ones_share_one_read_at_the_windows_end(sessions) -> None:
    job_id = JobFactory.create(sessions=sessions, status=JobStatus.DISPATCHED, quiet=True).id
    assert _delay(sessions, job_id) == 0.0  # leading: no wait
    trailing = _delay(sessions, job_id)  # within its window
    assert trailing is not None and 0 < trailing <= WINDOW
    # Every later callback before that read is covered by it: no read of its own.
    assert [_delay(sessions, job_id) for _ in range(5)] == [None] * 5


def test_a_callback_after_a_quiet_window_reads_now_again(sessions) -> None:
    job_id = JobFactory.create(sessions=sessions, status=JobStatus.DISPATCHED, quiet=True).id
    _due_in(sessions, job_id, -0.001)  # the last read's window has ended
    assert _delay(sessions, job_id) == 0.0
    _due_in(sessions, job_id, 0.5)  # a read 1.5 s ago, none scheduled: trail at its window's end
    delay = _delay(sessions, job_id)
    assert delay is not None and 0 < delay <= 0.5
    assert _delay(sessions, job_id) is None
