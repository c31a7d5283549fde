"""``gpubill jobs show|retry-settlement`` against the running stack: the receipt, and a
job stuck with an open hold after RunPod completed is settled by the worker's own path —
charged exactly once, however often settlement is retried and whatever the worker does
with its queued refreshes afterwards."""
from __future__ import annotations

import json

import pytest
import redis
from sqlalchemy import func, select

from gateways.runpod import RunPodGateway
from ledger.db import transaction
from ledger.models import Job, LedgerTransaction, Wallet
from tests.factories import FundedWalletFactory
from tests.gpubill.operator_support import gpubill
from tests.helpers import Api, wait_for
from tests.model import rates
from tests.stacks import frozen_worker

pytestmark = pytest.mark.integration
SMALL = rates.packs()["small"]["credits"]  # a wallet as one top-up of pack small leaves it


def cli_env(stack) -> dict[str, str]:
    return {k: stack.env[k] for k in ("GPUBILL_RUNPOD_BASE_URL", "GPUBILL_BROKER_URL")}


def captures(sessions, job_id: str) -> int:
    with transaction(sessions) as s:
        return s.scalar(select(func.count()).where(LedgerTransaction.kind == "capture",
                                                   LedgerTransaction.ref == job_id))


def drained(broker_url: str) -> bool:
    """Every queued task taken and acknowledged (kombu's Redis transport keeps taken,
    unacknowledged messages in the ``unacked`` hash)."""
    r = redis.Redis.from_url(broker_url)
    return r.llen("gpu_status") == 0 and r.hlen("unacked") == 0


def test_retry_settlement_settles_a_stuck_job_once(stack, db_url, sessions, invariants) -> None:
    api = Api(stack)
    user = FundedWalletFactory.create(sessions=sessions, prefix="jobs", credits=SMALL).user_id
    # A lost RunPod callback: only polling (held back below) would find the result.
    r = api.submit(user, "framing", 10, {"emulator": {"execution_ms": 1500, "skip_webhook": True}})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    api.wait_job(job_id, ("dispatched", "in_progress"))
    with frozen_worker(stack):
        with transaction(sessions) as s:
            job = s.get(Job, job_id)
            where = (job.endpoint_id, job.runpod_job_id)
        gateway = RunPodGateway(stack.settings.runpod_base_url,
                                stack.settings.runpod_api_key.get_secret_value())
        wait_for(lambda: (gateway.status(*where) or {}).get("status") == "COMPLETED", 30,
                 "RunPod to finish the job")
        assert api.job(job_id)["status"] in ("dispatched", "in_progress")  # stuck, hold open
        balance_before = api.wallet(user)["balance"]

        settled = gpubill(db_url, "jobs", "retry-settlement", job_id, **cli_env(stack))
        assert settled.exit_code == 0, settled.output
        receipt = api.job(job_id)
        assert receipt["status"] == "completed" and receipt["charge"] >= 1
        assert f"charge {receipt['charge']}" in settled.output
        again = gpubill(db_url, "jobs", "retry-settlement", job_id, **cli_env(stack))
        assert again.exit_code == 0 and "already settled" in again.output
    # The worker wakes up to the refreshes beat queued meanwhile: they find it settled.
    wait_for(lambda: drained(stack.settings.broker_url), 60, "the worker to drain gpu_status")
    assert captures(sessions, job_id) == 1
    wallet = api.wallet(user)
    assert wallet["balance"] == balance_before - receipt["charge"] and wallet["held"] == 0
    assert api.job(job_id)["charge"] == receipt["charge"]
    invariants()


def test_show_prints_the_receipt(stack, db_url, sessions) -> None:
    api = Api(stack)
    user = FundedWalletFactory.create(sessions=sessions, prefix="jobs", credits=SMALL).user_id
    r = api.submit(user, "overlay", 10, {"emulator": {"execution_ms": 700}})
    job = api.wait_job(r.json()["job_id"], ("completed",))
    shown = gpubill(db_url, "jobs", "show", job["job_id"])
    assert shown.exit_code == 0
    for field, value in (("status", "completed"), ("charge", job["charge"]),
                         ("released", job["released"]), ("runpod.execution_ms", job["runpod"]["execution_ms"]),
                         ("runpod_cost_usd", job["runpod_cost_usd"])):
        assert any(line.split() == [field, str(value)] for line in shown.output.splitlines()), field
    as_json = json.loads(gpubill(db_url, "jobs", "show", job["job_id"], "--json").output)
    assert as_json["hold_open"] is None
    assert {k: as_json[k] for k in job} == api.job(job["job_id"])
    # A settled job is left as it is.
    retry = gpubill(db_url, "jobs", "retry-settlement", job["job_id"], **cli_env(stack))
    assert retry.exit_code == 0 and "already settled" in retry.output
    assert captures(sessions, job["job_id"]) == 1
    with transaction(sessions) as s:
        assert s.get(Wallet, user).held == 0


def test_unknown_job_is_an_error(db_url) -> None:
    for args in (("show", "job_nope"), ("retry-settlement", "job_nope")):
        result = gpubill(db_url, "jobs", *args)
        assert result.exit_code == 1 and "no job job_nope" in result.output
