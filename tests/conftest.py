"""Shared fixtures: the backend under test (embedded defaults or PostgreSQL + Redis), a
migrated ledger database, and the whole service running as real processes.

``GPUBILL_TEST_BACKEND=embedded`` (default): SQLite file + the embedded broker.
``GPUBILL_TEST_BACKEND=postgres``: a fresh database on 127.0.0.1:5432 and Redis on
127.0.0.1:6379. Under ``CI=true`` a missing PostgreSQL or Redis fails the run.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from gpubill.launcher import Stack
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.invariants import Violation, check
from ledger.migrate import upgrade
from ledger.reconcile import gpu_violations
from tests.notify_sink import NotifySink

BACKEND = os.environ.get("GPUBILL_TEST_BACKEND", "embedded")
IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("GPUBILL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("GPUBILL_TEST_REDIS", "redis://127.0.0.1:6379")


@dataclass(frozen=True)
class Backend:
    name: str
    database_url: str
    broker_url: str | None  # None: the stack starts its embedded broker
    data_dir: Path


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend-dependent-only", action="store_true",
        help="deselect tests that run the same on either backend (tests/backend_scope.py): "
             "scripts/test.sh runs those once, on the embedded run")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--backend-dependent-only"):
        return
    from tests.backend_scope import depends_on_backend

    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        (keep if depends_on_backend(item) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _missing(what: str, err: Exception) -> None:
    msg = f"{what} unavailable for the {BACKEND} backend: {err}"
    if IN_CI:
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def _postgres(data_dir: Path) -> Iterator[Backend]:
    name = f"gpubill_test_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as err:  # noqa: BLE001 - any driver error: PostgreSQL is not there
        _missing("PostgreSQL", err)
    try:
        db = claim_redis_db()
    except Exception as err:  # noqa: BLE001 - any client error: Redis is not there
        _missing("Redis", err)
    index = db.connection_pool.connection_kwargs["db"]
    try:
        yield Backend("postgres", PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}",
                      f"{REDIS_URL}/{index}", data_dir)
    finally:
        db.flushdb()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def claim_redis_db() -> redis.Redis:
    """An empty Redis database index of our own: concurrent test runs on one Redis
    must not share (and flush) each other's broker."""
    indexes = list(range(1, 16))
    secrets.SystemRandom().shuffle(indexes)
    for index in indexes:
        db = redis.Redis.from_url(f"{REDIS_URL}/{index}")
        if db.set("gpubill:test-run", os.getpid(), nx=True, ex=6 * 3600):
            for key in db.scan_iter():
                if key != b"gpubill:test-run":
                    db.delete(key)
            return db
    raise RuntimeError("every Redis database index 1-15 is claimed by another test run")


@pytest.fixture(scope="session")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    data_dir = tmp_path_factory.mktemp("gpubill")
    if BACKEND == "postgres":
        yield from _postgres(data_dir)
    elif BACKEND == "embedded":
        yield Backend("embedded", f"sqlite:///{data_dir / 'ledger.db'}", None, data_dir)
    else:
        raise pytest.UsageError(f"unknown GPUBILL_TEST_BACKEND {BACKEND!r}")


@pytest.fixture
def new_database(tmp_path: Path, backend: Backend) -> Iterator[Callable[[], str]]:
    """Call to get the URL of a fresh, migrated database of the test's own (any number
    per test), so whole-ledger checks and sweeps see only what the test did."""
    from tests.databases import migrated_database  # it imports this module's constants

    with ExitStack() as stack:
        yield lambda: stack.enter_context(migrated_database(tmp_path, "iso"))


@pytest.fixture(scope="session")
def db_url(backend: Backend) -> str:
    """The backend's database, migrated to head by Alembic (as production is)."""
    upgrade(backend.database_url)
    return backend.database_url


@pytest.fixture(scope="session")
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def violations(factory: sessionmaker[Session]) -> list[Violation]:
    with transaction(factory) as s:
        return check(s) + gpu_violations(s)  # + RunPod GPU-time conservation (issue 11)


@pytest.fixture
def invariants(sessions: sessionmaker[Session]):
    """Call to assert every ledger invariant holds over the whole database."""

    def assert_hold() -> None:
        found = violations(sessions)
        assert found == [], "\n".join(map(str, found))

    return assert_hold


@pytest.fixture(scope="session")
def notify_sink() -> Iterator[NotifySink]:
    """The app's webhook endpoint: records gpubill's signed job notifications."""
    sink = NotifySink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def stack(backend: Backend, db_url: str, notify_sink: NotifySink) -> Iterator[Stack]:
    """The whole service as real processes: receiver (gunicorn), Celery worker, beat,
    RunPod stand-in, and the embedded broker unless the backend brings Redis."""
    env = {
        "GPUBILL_ENV": "test",
        "GPUBILL_DATA_DIR": str(backend.data_dir / "stack"),
        "GPUBILL_DATABASE_URL": db_url,
        "GPUBILL_POLL_INTERVAL_S": "1",
        "GPUBILL_SILENT_AFTER_S": "2",
        "GPUBILL_OUTBOX_INTERVAL_S": "1",
        "GPUBILL_OUTBOX_AFTER_S": "3",
        # Stripe flows (issue 3): a refund before its top-up waits ~a few seconds, then parks.
        "GPUBILL_STRIPE_PENDING_ATTEMPTS": "6",
        "GPUBILL_STRIPE_PENDING_WINDOW_S": "2",  # production: 3 days, as Stripe retries
        "GPUBILL_STRIPE_RETRY_BASE_S": "0.25",
        # Job lifecycle (issue 4): short waits so failure paths settle in seconds.
        "GPUBILL_EXPIRY_INTERVAL_S": "1",
        "GPUBILL_RUNPOD_TIMEOUT_S": "2",
        "GPUBILL_DISPATCH_MAX_RETRIES": "3",
        "GPUBILL_RETRY_BACKOFF_S": "0.2",
        "GPUBILL_NOTIFY_URL": notify_sink.url,
        # Every test client is 127.0.0.1 with one key: the shared stack is not throttled
        # (tests/webhook_receiver/test_rate_limits.py proves the limits on a receiver of its own).
        "GPUBILL_RATE_LIMIT_API": "1000000/minute",
        "GPUBILL_RATE_LIMIT_AUTH_FAILURES": "1000000/minute",
    }
    if backend.broker_url:
        env["GPUBILL_BROKER_URL"] = backend.broker_url
    stack = Stack(env=env).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def api(stack):
    """An HTTP client of the running stack (the app's, Stripe's and an operator's view)."""
    from tests.helpers import Api

    return Api(stack)
