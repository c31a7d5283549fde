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

from tests.helpers import Api
from tests.model import rates as model
from tests.runpod_truth import runpod_jobs_for
from webhook_receiver.tokens import webhook_token

pytestmark = pytest.mark.integration
TERMINAL = ("completed", "failed", "cancelled", "expired", "lost", "rejected")
EXECUTION_MS = 4000


@pytest.mark.parametrize("forged", [
    {"status": "COMPLETED", "executionTime": 1, "delayTime": 1, "output": {"forged": True}},
    {"status": "COMPLETED", "executionTime": 14_000, "delayTime": 1, "output": {"forged": True}},
    {"status": "FAILED", "executionTime": 1, "delayTime": 1, "error": "forged"},
    {"status": "CANCELLED"},
])
def test_forged_callback_for_a_running_job_changes_no_money(api: Api, stack, invariants,
                                                             forged: dict) -> None:
    user = api.funded_user("trust")
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
