"""With the broker stopped, the receiver still accepts (stores) job requests and Stripe
webhooks; once the broker is back, the outbox sweeper publishes them and they are
processed. A second ``Stack`` with its own embedded broker, on the same database and
the session's RunPod stand-in, so the broker can be stopped on either backend (the
shared Redis of the postgres backend cannot be); the session stack's worker and beat
are paused meanwhile so only the second stack can do the work."""
from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from gpubill.broker import free_port
from gpubill.launcher import Stack
from ledger.models import EventStatus, JobStatus
from tests.helpers import Api, db_event, wait_for
from tests.stacks import broker_down

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
def only(second: Stack, session_stack: Stack, sessions) -> Iterator[None]:
    """Freeze the session stack's worker and beat, so only ``second`` works. Its beat is
    started afresh afterwards: RedBeat's lock (30 s) may have lapsed while frozen."""
    try:
        with session_stack.paused("beat"), _worker_frozen_outside_a_write(session_stack, sessions):
            yield
    finally:
        session_stack.restart("beat")


@contextmanager
def _worker_frozen_outside_a_write(stack: Stack, sessions) -> Iterator[None]:
    """``stack.paused("worker")`` at a moment the worker holds no SQLite write lock. A
    worker frozen inside a write transaction (an outbox sweep, say) blocks every writer
    on the database file — ``second``'s receiver storing the job — until thawed: CI saw
    ``POST /v1/jobs`` take 10.2 s, past the client's timeout. On PostgreSQL writers of
    other rows do not wait, so one freeze is enough."""
    engine = sessions.kw["bind"]
    for _ in range(20):
        with stack.paused("worker"):
            if engine.dialect.name != "sqlite" or _no_writer(engine.url.database, wait_s=0):
                yield
                return
        # Thawed: wait (on the lock itself) for the write it was in to commit.
        _no_writer(engine.url.database, wait_s=10)
    raise AssertionError("the session worker held the SQLite write lock at every freeze")


def _no_writer(path: str, wait_s: float) -> bool:
    """True when a write transaction can begin on SQLite file ``path`` within ``wait_s``."""
    con = sqlite3.connect(path, timeout=wait_s)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        con.close()


def test_requests_and_webhooks_accepted_while_broker_down_run_when_it_is_back(
        stack, second: Stack, sessions, invariants) -> None:
    api = Api(second)
    user = f"b-{secrets.token_hex(4)}"
    api.topup(user, "small")
    wait_for(lambda: api.wallet(user)["balance"] == 500, 20, "first top-up")

    with only(second, stack, sessions):
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
