"""Poison jobs (issue 11; issue 15 "Poison jobs"): a job whose stored input the worker
cannot load (nested deeper than Python's JSON decoder recurses: ``RecursionError``,
not a classified transient error) fails on every delivery. It is parked after the
bounded attempts (``GPUBILL_DISPATCH_MAX_RETRIES`` + 1, the outbox sweeper's
re-publishes counted), its hold released through the ledger, ``gpubill reconcile``
reports it, and a user's cancel of such a job ends it."""
from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from ledger.db import transaction
from ledger.models import Hold, Job, JobStatus, utcnow
from ledger.reconcile import run_checks
from tests.factories import FundedWalletFactory, JobFactory
from tests.helpers import wait_for
from tests.model import rates
from tests.runpod_truth import runpod_jobs

pytestmark = pytest.mark.integration
SMALL = rates.packs()["small"]["credits"]  # a wallet as one top-up of pack small leaves it
DEEP = "[" * 5000 + "]" * 5000  # valid JSON; json.loads raises RecursionError


def poisoned_held_job(stack, sessions, user: str) -> tuple[str, str, int]:
    """A held job (hold placed through the ledger) whose stored input is then replaced
    by one no worker can load; stuck long enough for the sweeper. (id, nonce, hold)."""
    nonce = secrets.token_hex(8)
    job_id = JobFactory.create(sessions=sessions, user_id=user, status=JobStatus.HELD,
                               params={"duration_s": 30, "resolution": "1080p"}, job_input={"nonce": nonce},
                               token_secret=stack.settings.runpod_token_secret.get_secret_value()).id
    with transaction(sessions) as s:
        s.execute(text("UPDATE jobs SET input = :deep WHERE id = :id"), {"deep": DEEP, "id": job_id})
        s.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow() - timedelta(seconds=60)))
    return job_id, nonce, rates.quote("framing", 30).hold  # the model's hold


def state(sessions, job_id: str) -> tuple[str, int, bool, str, str]:
    with transaction(sessions) as s:
        status, failures, flagged, error, hold_id = s.execute(
            select(Job.status, Job.task_failures, Job.flagged, Job.error, Job.hold_id)
            .where(Job.id == job_id)).one()
        hold = s.get(Hold, hold_id)
        return status, failures, flagged, error or "", f"{hold.status}:{hold.close_key}"


def test_poison_job_is_parked_after_bounded_attempts(api, stack, sessions) -> None:
    user = FundedWalletFactory.create(sessions=sessions, prefix="poison", credits=SMALL).user_id
    before = api.wallet(user)
    job_id, nonce, hold = poisoned_held_job(stack, sessions, user)
    assert api.wallet(user)["held"] == before["held"] + hold
    bound = stack.settings.dispatch_max_retries + 1
    wait_for(lambda: state(sessions, job_id)[0] in JobStatus.TERMINAL, 90, "the poison job parked")
    status, failures, flagged, error, hold_end = state(sessions, job_id)
    assert (status, failures, flagged) == ("failed", bound, True)
    assert error.startswith(f"parked after {bound} failed attempts: RecursionError"), error
    assert hold_end == f"released:job:{job_id}:release"
    assert api.wallet(user) == before  # the hold is back; nothing charged
    assert not [t for t in runpod_jobs(stack.settings) if t["input"].get("nonce") == nonce]
    with transaction(sessions) as s:
        report = run_checks(s)
    [poison] = [r for r in report.results if r.name == "poison jobs (runpod)"]
    assert [v.subject for v in poison.violations] == [f"job {job_id}"]
    assert "parked" in poison.violations[0].detail


def test_cancel_of_a_poison_job_ends_it(api, stack, sessions) -> None:
    user = FundedWalletFactory.create(sessions=sessions, prefix="poison", credits=SMALL).user_id
    before = api.wallet(user)
    job_id, _, _ = poisoned_held_job(stack, sessions, user)
    r = api.http.post(f"{api.base}/v1/jobs/{job_id}/cancel", timeout=10)
    assert r.status_code == 202, r.text
    wait_for(lambda: state(sessions, job_id)[0] in JobStatus.TERMINAL, 60, "the cancel to end it")
    status, _, _, error, hold_end = state(sessions, job_id)
    assert status == "cancelled" and "cancelled by the user" in error
    assert hold_end == f"released:job:{job_id}:release"
    assert api.wallet(user) == before
