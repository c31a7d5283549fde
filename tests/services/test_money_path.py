"""The money path through real processes: receiver (gunicorn) → broker → Celery worker →
RunPod stand-in (HTTP, via the runpod SDK) → webhook → /status re-fetch → capture/release.
Every test checks the ledger invariants, not just status codes."""
from __future__ import annotations

import secrets
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from ledger.db import transaction
from ledger.models import EventStatus, Hold, HoldStatus, JobStatus, LedgerTransaction, Topup
from ledger.reconcile import run_checks
from tests.factories import ChargeFactory, CheckoutSessionFactory, EventFactory, user_id
from tests.helpers import Api, db_event, scrape, value, wait_for
from tests.stacks import frozen_worker

pytestmark = pytest.mark.integration
TERMINAL = tuple(JobStatus.TERMINAL)



def funded(api: Api, pack: str = "small") -> str:
    return api.funded_user("u", pack)


def test_checkout_completed_credits_the_pack_once(api, sessions, invariants) -> None:
    user = user_id()
    event = api.topup(user, "medium")
    again = api.post_event(event)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    wait_for(lambda: api.wallet(user)["balance"] == 2200, 20, "credit")
    # The same payment as a second event object (another evt_ id) credits nothing more.
    replay = dict(event, id=f"evt_{secrets.token_hex(12)}")
    assert api.post_event(replay).status_code == 200
    wait_for(lambda: (e := db_event(sessions, replay["id"])) and e.status == EventStatus.PROCESSED,
             20, "replay processed")
    assert api.wallet(user) == {"user_id": user, "balance": 2200, "held": 0, "available": 2200, "status": "active"}
    with transaction(sessions) as s:
        session_id = event["data"]["object"]["id"]
        assert s.scalar(select(func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.ref == session_id, LedgerTransaction.kind == "topup")) == 1
        assert s.scalars(select(Topup.status).where(Topup.checkout_session_id == session_id)).one() == "credited"
    invariants()


def test_unpaid_completion_and_other_types_are_stored_and_ignored(api, sessions, invariants) -> None:
    user = user_id()
    unpaid = EventFactory(obj=CheckoutSessionFactory(user=user, pack="small", payment_status="unpaid"))
    other = EventFactory(type="charge.succeeded", obj=ChargeFactory())
    for ev in (unpaid, other):
        assert api.post_event(ev).status_code == 200
        wait_for(lambda ev=ev: (e := db_event(sessions, ev["id"])) and e.status == EventStatus.IGNORED, 20, "ignored")
    assert api.wallet(user)["balance"] == 0
    invariants()


def test_amount_mismatch_is_parked_failed_not_credited(api, sessions, invariants) -> None:
    user = user_id()
    ev = EventFactory(obj=CheckoutSessionFactory(user=user, pack="large", amount_total=500))
    assert api.post_event(ev).status_code == 200
    stored = wait_for(lambda: (e := db_event(sessions, ev["id"])) and e.status == EventStatus.FAILED and e,
                      20, "failed")
    assert "costs 3500" in stored.last_error
    assert api.wallet(user)["balance"] == 0
    invariants()


def wrong_mode_gauge(stack) -> float:  # type: ignore[no-untyped-def]
    return value(scrape(stack.receiver_url), "gpubill_stripe_events_not_applied", reason="wrong_mode")


def test_livemode_event_never_touches_a_test_ledger(api, stack, sessions, invariants) -> None:
    before = wrong_mode_gauge(stack)
    user = user_id()
    ev = EventFactory(obj=CheckoutSessionFactory(user=user, pack="small"), livemode=True)
    assert api.post_event(ev).status_code == 200
    stored = wait_for(lambda: (e := db_event(sessions, ev["id"])) and e.status == EventStatus.WRONG_MODE and e,
                      20, "stored as wrong_mode")
    assert "livemode" in stored.last_error
    assert api.wallet(user)["balance"] == 0
    # Issue 12 case 6: never silently ignored — gpubill reconcile names it.
    with transaction(sessions) as s:
        report = run_checks(s)
    [row] = [r for r in report.results if r.name == "events parked or in the wrong mode (stripe)"]
    assert f"stripe event {ev['id']}" in [v.subject for v in row.violations]
    assert wrong_mode_gauge(stack) == before + 1  # and a /metrics gauge to alert on
    invariants()


def test_completed_job_captures_measured_gpu_seconds(api, sessions, invariants) -> None:
    user = funded(api)
    r = api.submit(user, "overlay", 30, {"emulator": {"execution_ms": 2300}})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "requested" and body["quote"]["hold"] == 12
    job = api.wait_job(body["job_id"], TERMINAL)
    assert job["status"] == "completed", job
    execution_ms = job["runpod"]["execution_ms"]
    assert 2300 <= execution_ms < 3300  # measured by the stand-in, not the requested figure
    expected = max(1, -(-execution_ms // 2000))  # ceil(ms / 1000 × 0.5 credits)
    assert job["charge"] == expected
    assert job["released"] == 12 - expected
    assert job["runpod"]["delay_ms"] is not None and job["output"]["output_url"].startswith("s3://")
    # Receipt: RunPod cost = executionTime × the GPU's USD/s (RTX A4000 $0.00016/s); margin
    # = charge at $0.01 a credit − that cost; a timestamp for each state it went through.
    cost = (Decimal(execution_ms) / 1000 * Decimal("0.00016")).quantize(Decimal("0.000001"))
    assert Decimal(job["runpod_cost_usd"]) == cost
    assert Decimal(job["margin_usd"]) == Decimal(expected) / 100 - cost
    assert set(job["timestamps"]) >= {"requested", "held", "dispatched", "completed"}
    assert api.wallet(user) == {"user_id": user, "balance": 500 - expected, "held": 0,
                                "available": 500 - expected, "status": "active"}
    invariants()


def test_failed_job_releases_the_whole_hold(api, invariants) -> None:
    user = funded(api)
    r = api.submit(user, "track", 30, {"emulator": {"fail": "decoder crashed", "execution_ms": 300}})
    job = api.wait_job(r.json()["job_id"], TERMINAL)
    assert (job["status"], job["charge"], job["released"]) == ("failed", 0, job["quote"]["hold"])
    assert job["error"] == "decoder crashed"
    assert api.wallet(user)["balance"] == 500 and api.wallet(user)["held"] == 0
    invariants()


def test_runpod_timeout_releases_and_bills_nothing(api, invariants) -> None:
    """The dispatch caps GPU time at the funded seconds (policy.executionTimeout); a job
    that runs past it is TIMED_OUT on RunPod's side and the user pays nothing."""
    user = funded(api)
    r = api.submit(user, "framing", 1, {"emulator": {"execution_ms": 60_000}})  # funds 6 GPU-s
    job = api.wait_job(r.json()["job_id"], TERMINAL, timeout_s=30)
    assert job["status"] == "timed_out", job
    assert 6000 <= job["runpod"]["execution_ms"] < 7000  # stopped at the funded maximum
    assert job["charge"] == 0 and job["released"] == job["quote"]["hold"]
    assert api.wallet(user)["held"] == 0 and api.wallet(user)["balance"] == 500
    invariants()


def test_no_credits_is_402_and_stores_nothing(api, sessions, invariants) -> None:
    user = user_id("broke")
    r = api.submit(user, "framing")
    assert r.status_code == 402 and r.json()["error"]["code"] == "insufficient_funds"
    with transaction(sessions) as s:
        from ledger.models import Job
        assert s.scalar(select(func.count()).select_from(Job).where(Job.user_id == user)) == 0
    invariants()


def test_worker_rejects_what_the_precheck_let_through(stack, api, sessions, invariants) -> None:
    """The pre-check is advisory; the worker's conditional hold decides. Requests that
    pass the pre-check before any hold is placed (the worker is paused) for more than
    the wallet covers end ``rejected``, nothing held."""
    user = funded(api)  # 500 credits; an upscale 4x of 300 s holds 450
    with frozen_worker(stack):
        answers = [api.submit(user, "upscale", 300, {"emulator": {"execution_ms": 200}}, scale=4)
                   for _ in range(3)]
    assert [r.status_code for r in answers] == [202, 202, 202]
    accepted = [r.json()["job_id"] for r in answers]
    jobs = [api.wait_job(j, TERMINAL) for j in accepted]
    statuses = sorted(j["status"] for j in jobs)
    assert statuses.count("completed") == 1 and statuses.count("rejected") == len(accepted) - 1, statuses
    with transaction(sessions) as s:
        holds = s.scalars(select(Hold).where(Hold.user_id == user)).all()
        assert len(holds) == 1 and holds[0].status == HoldStatus.CAPTURED
    w = api.wallet(user)
    assert w["held"] == 0 and w["balance"] == 500 - sum(j["charge"] or 0 for j in jobs)
    invariants()


def test_silent_job_is_settled_by_the_poller(api, invariants) -> None:
    """RunPod never calls back (the stand-in skips the webhook): beat's poller finds the
    job silent and re-fetches /status; without it the job would never settle."""
    user = funded(api)
    r = api.submit(user, "framing", 30, {"emulator": {"execution_ms": 300, "skip_webhook": True}})
    job = api.wait_job(r.json()["job_id"], TERMINAL, timeout_s=30)
    assert job["status"] == "completed" and job["charge"] >= 1
    assert api.wallet(user)["held"] == 0
    invariants()


def test_runpod_webhook_with_unknown_token_is_404(api) -> None:
    import requests
    r = requests.post(f"{api.base}/webhooks/runpod/{secrets.token_hex(32)}", json={"status": "COMPLETED"}, timeout=5)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = requests.post(f"{api.base}/webhooks/runpod/not-a-token", json={}, timeout=5)
    assert r.status_code == 404
