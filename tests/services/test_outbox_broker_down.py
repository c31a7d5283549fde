"""With the broker stopped, the receiver still accepts (stores) job requests and Stripe
webhooks; once the broker is back, the outbox sweeper publishes them and they are
processed. A second ``Stack`` with its own embedded broker, on the same database and
the session's RunPod stand-in, so the broker can be stopped on either backend (the
shared Redis of the postgres backend cannot be); the session stack's worker and beat
are paused meanwhile so only the second stack can do the work."""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from gpubill.broker import free_port
from gpubill.launcher import Stack
from ledger.models import EventStatus, JobStatus
from tests.helpers import Api, db_event, wait_for
from tests.stacks import broker_down, frozen_worker

pytestmark = pytest.mark.integration
TERMINAL = tuple(JobStatus.TERMINAL)
OWN = ("GPUBILL_BROKER_URL", "GPUBILL_RECEIVER_PORT", "GPUBILL_PUBLIC_BASE_URL", "GPUBILL_DATA_DIR")


@pytest.fixture
def second(stack: Stack, backend) -> Iterator[Stack]:
    env = {k: v for k, v in stack.env.items() if k not in OWN}
    port = free_port()
    env.update({"GPUBILL_DATA_DIR": str(backend.data_dir / "second"),
                "GPUBILL_RECEIVER_PORT": str(port),
                "GPUBILL_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"})
    other = Stack(env=env, emulator=False, worker_concurrency=1).start()
    try:
        yield other
    finally:
        other.stop()


@contextmanager
def only(second: Stack, session_stack: Stack) -> Iterator[None]:
    """Freeze the session stack's worker and beat, so only ``second`` works. Its beat is
    started afresh afterwards: RedBeat's lock (30 s) may have lapsed while frozen."""
    try:
        with session_stack.paused("beat"), frozen_worker(session_stack):
            yield
    finally:
        session_stack.restart("beat")


def test_requests_and_webhooks_accepted_while_broker_down_run_when_it_is_back(
        stack, second: Stack, sessions, invariants) -> None:
    api = Api(second)
    user = f"b-{secrets.token_hex(4)}"
    api.topup(user, "small")
    wait_for(lambda: api.wallet(user)["balance"] == 500, 20, "first top-up")

    with only(second, stack):
        with broker_down(second):
            r = api.submit(user, "framing", 30, {"emulator": {"execution_ms": 200}})
            assert r.status_code == 202, r.text  # stored; its publish failed
            job_id = r.json()["job_id"]
            topup = api.topup(user, "small")  # Stripe webhook: 200, stored
            assert db_event(sessions, topup["id"]).status == EventStatus.RECEIVED
            assert api.job(job_id)["status"] == "requested"
        job = api.wait_job(job_id, TERMINAL, 40)
        wait_for(lambda: db_event(sessions, topup["id"]).status == EventStatus.PROCESSED, 20,
                 "second top-up processed")

    assert job["status"] == "completed" and job["charge"] >= 1
    assert api.wallet(user) == {"user_id": user, "balance": 1000 - job["charge"], "held": 0,
                                "available": 1000 - job["charge"], "status": "active"}
    invariants()
