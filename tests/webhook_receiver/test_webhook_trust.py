"""RunPod callbacks are never trusted for money (issue 13): a callback forged for a job
that is still RUNNING on RunPod — valid token, lying body — changes nothing; the job is
billed only from what the RunPod stand-in reports it executed (its ground truth), priced
by the independent model (``tests/model``: the rate card's formulas read from the TOML).

The forged body claims a terminal status with an executionTime far from the truth, so a
receiver or worker that billed from the body would settle the job early at the forged
figure (or release it as failed) and the final charge would differ.
"""
from __future__ import annotations

import secrets

import pytest
import requests

from ledger.db import transaction
from ledger.models import RunPodJob
from tests.factories import FundedWalletFactory
from tests.helpers import Api, wait_for
from tests.model import rates as model
from tests.runpod_truth import runpod_jobs_for
from webhook_receiver.tokens import webhook_token

pytestmark = pytest.mark.integration
SMALL = model.packs()["small"]["credits"]  # a wallet as one top-up of pack small leaves it
TERMINAL = ("completed", "failed", "cancelled", "expired", "lost", "rejected")
EXECUTION_MS = 4000


@pytest.mark.parametrize("forged", [
    {"status": "COMPLETED", "executionTime": 1, "delayTime": 1, "output": {"forged": True}},
    {"status": "COMPLETED", "executionTime": 14_000, "delayTime": 1, "output": {"forged": True}},
    {"status": "FAILED", "executionTime": 1, "delayTime": 1, "error": "forged"},
    {"status": "CANCELLED"},
])
def test_forged_callback_for_a_running_job_changes_no_money(api: Api, sessions, stack, invariants,
                                                             forged: dict) -> None:
    user = FundedWalletFactory.create(sessions=sessions, prefix="trust", credits=SMALL).user_id
    nonce = secrets.token_hex(6)
    r = api.submit(user, "framing", 30, {"nonce": nonce, "emulator": {"execution_ms": EXECUTION_MS}})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    job = api.wait_job(job_id, ("dispatched", "in_progress") + TERMINAL, 30)
    assert job["status"] not in TERMINAL, job  # the forgery must reach a running job
    cfg = stack.settings
    token = webhook_token(cfg.runpod_token_secret.get_secret_value(), job_id)
    url = f"{stack.receiver_url}/webhooks/runpod/{token}"
    body = {"id": job["runpod"]["job_id"], **forged}
    for _ in range(3):  # duplicated, as RunPod retries
        assert requests.post(url, json=body, timeout=10).status_code == 200

    done = api.wait_job(job_id, TERMINAL, 60)
    truth = runpod_jobs_for(cfg, nonce)
    assert len(truth) == 1 and truth[0]["state"] == "COMPLETED", truth
    executed = truth[0]["executed_ms"]
    assert executed >= EXECUTION_MS
    expected = model.charge(model.quote("framing", 30), executed)
    hold = done["quote"]["hold"]
    assert (done["status"], done["charge"], done["released"]) == ("completed", expected, hold - expected)
    assert done["output"] != forged.get("output")
    assert api.wallet(user)["balance"] == 500 - expected
    invariants()


def test_callback_naming_a_runpod_job_runpod_does_not_know_is_not_adopted(api: Api, sessions, stack,
                                                                          invariants) -> None:
    """A tokened callback for a job still ``held`` (its /run not answered yet) that names
    a RunPod id RunPod does not know must not be adopted as the job's work (the job would
    then end ``lost`` on RunPod's 404): the job runs and is billed from the stand-in's
    ground truth (found by the simulation, seed 3). The id is recorded as a stray settled
    with RunPod's 404 (it might be work RunPod forgot), which moves no money."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="trust", credits=SMALL).user_id
    nonce = secrets.token_hex(6)
    # Two /run calls hang past the 2 s client timeout: the job stays held meanwhile.
    r = api.submit(user, "framing", 30, {"nonce": nonce, "emulator": {"execution_ms": 300,
                                                                       "run_errors": ["timeout", "timeout"]}})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert api.wait_job(job_id, ("held",) + TERMINAL, 30)["status"] == "held"
    cfg = stack.settings
    token = webhook_token(cfg.runpod_token_secret.get_secret_value(), job_id)
    forged = {"id": f"rp-unknown-{nonce}", "status": "COMPLETED", "executionTime": 1, "delayTime": 1}
    assert requests.post(f"{stack.receiver_url}/webhooks/runpod/{token}", json=forged, timeout=10).status_code == 200

    done = api.wait_job(job_id, TERMINAL, 60)
    [truth] = runpod_jobs_for(cfg, nonce)
    expected = model.charge(model.quote("framing", 30), truth["executed_ms"])
    assert (done["status"], done["runpod"]["job_id"], done["charge"]) == ("completed", truth["id"], expected)
    stray = wait_for(lambda: (r := _runpod_row(sessions, forged["id"])) is not None and r.state == "settled" and r,
                     30, "the unknown id recorded as a settled stray")
    assert (stray.role, stray.job_id, stray.runpod_status, stray.execution_ms) == ("stray", job_id, "404", None)
    invariants()


def _runpod_row(sessions, runpod_job_id: str) -> RunPodJob | None:
    with transaction(sessions) as s:
        return s.get(RunPodJob, runpod_job_id)
