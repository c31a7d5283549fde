"""Every way a dispatched job can end on RunPod's side ends in one money outcome, and
rows whose task never ran are picked up by the outbox sweeper."""
from __future__ import annotations

from datetime import timedelta

import pytest
import requests
import runpod
from runpod.endpoint.runner import RunPodClient
from sqlalchemy import update

from ledger.db import transaction
from ledger.models import Job, JobStatus, utcnow
from tests.factories import FundedWalletFactory, JobFactory
from tests.helpers import Api
from tests.model import rates
from webhook_receiver.tokens import webhook_token

pytestmark = pytest.mark.integration
SMALL = rates.packs()["small"]["credits"]  # a wallet as one top-up of pack small leaves it
TERMINAL = tuple(JobStatus.TERMINAL)



def running(api: Api, user: str) -> dict:
    r = api.submit(user, "framing", 30, {"emulator": {"never_finish": True}})
    assert r.status_code == 202
    return api.wait_job(r.json()["job_id"], ("dispatched", "in_progress"), 20)


def test_job_cancelled_on_runpod_releases_everything(api, sessions, stack, invariants) -> None:
    user = FundedWalletFactory.create(sessions=sessions, prefix="o", credits=SMALL).user_id
    job = running(api, user)
    cfg = stack.settings
    runpod.endpoint_url_base = cfg.runpod_base_url
    RunPodClient(api_key=cfg.runpod_api_key.get_secret_value()).post(
        f"gpubill-framing/cancel/{job['runpod']['job_id']}", data=None)
    done = api.wait_job(job["job_id"], TERMINAL)
    assert (done["status"], done["charge"], done["released"]) == ("cancelled", 0, done["quote"]["hold"])
    assert api.wallet(user) == {"user_id": user, "balance": 500, "held": 0, "available": 500, "status": "active"}
    invariants()


def test_job_runpod_forgot_is_lost_and_released(api, sessions, stack, invariants) -> None:
    """RunPod answers 404 for a job it no longer knows (results kept 30 min, ttl):
    the poller marks it lost and releases the hold. A restarted stand-in forgets all."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="o", credits=SMALL).user_id
    job = running(api, user)
    stack.restart("runpod-emulator")
    done = api.wait_job(job["job_id"], TERMINAL, 30)
    assert (done["status"], done["charge"], done["released"]) == ("lost", 0, done["quote"]["hold"])
    assert "404" in done["error"]
    assert api.wallet(user)["held"] == 0 and api.wallet(user)["balance"] == 500
    invariants()


def test_outbox_sweeper_runs_a_job_whose_task_was_never_published(api, stack, sessions, invariants) -> None:
    """The receiver committed the job but died before publishing: beat's sweeper
    enqueues it after GPUBILL_OUTBOX_AFTER_S and it is held, run and charged once."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="o", credits=SMALL).user_id
    job_id = JobFactory.create(sessions=sessions, user_id=user, params={"duration_s": 10, "resolution": "1080p"},
                               job_input={"emulator": {"execution_ms": 200}},
                               token_secret=stack.settings.runpod_token_secret.get_secret_value()).id
    with transaction(sessions) as s:  # committed "a while ago"
        s.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow() - timedelta(seconds=60)))
    done = api.wait_job(job_id, TERMINAL, 30)
    assert done["status"] == "completed" and done["charge"] >= 1
    assert api.wallet(user)["balance"] == 500 - done["charge"]
    invariants()


def test_runpod_webhook_body_is_never_trusted_for_money(api, sessions, stack, invariants) -> None:
    """Repeated callbacks claiming another executionTime change nothing: money follows
    the /status re-fetch, and a job is charged once (operation key job:{id}:capture)."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="o", credits=SMALL).user_id
    r = api.submit(user, "overlay", 30, {"emulator": {"execution_ms": 300}})
    job = api.wait_job(r.json()["job_id"], TERMINAL)
    token = webhook_token(stack.settings.runpod_token_secret.get_secret_value(), job["job_id"])
    for _ in range(3):
        resp = requests.post(f"{api.base}/webhooks/runpod/{token}", timeout=5,
                             json={"id": job["runpod"]["job_id"], "status": "COMPLETED", "executionTime": 999_999})
        assert resp.status_code == 200
    assert api.job(job["job_id"])["charge"] == job["charge"]
    assert api.wallet(user)["balance"] == 500 - job["charge"]
    invariants()


def test_dispatch_refused_by_runpod_fails_the_job_and_releases(api, sessions, invariants) -> None:
    """A 4xx from RunPod /run never succeeds on retry: the hold is released at once and
    the job ends ``failed`` with RunPod's reason."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="o", credits=SMALL).user_id
    r = api.submit(user, "framing", 30, {"emulator": {"no_such_override": 1}})  # stand-in answers 400
    job = api.wait_job(r.json()["job_id"], TERMINAL)
    assert (job["status"], job["charge"], job["released"]) == ("failed", 0, job["quote"]["hold"])
    assert "RunPod refused dispatch" in job["error"] and "400" in job["error"]
    assert job["runpod"]["job_id"] is None
    assert api.wallet(user) == {"user_id": user, "balance": 500, "held": 0, "available": 500, "status": "active"}
    invariants()
