"""Test helpers around whole stacks: a second, production-shaped stack with its own
database and broker; stopping a stack's embedded broker; a throwaway ledger database;
the receiver served in-process over real HTTP. (Prometheus scrapes: ``tests.helpers``.)"""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from gpubill.broker import EmbeddedBroker, free_port
from gpubill.launcher import Stack
from tests.databases import empty_database


def production_stack(data_dir: Path, backend_name: str) -> Iterator[Stack]:
    """One Celery worker per queue (concurrency 1), beat with its RedBeat lock, Flower,
    on a database and broker of its own: its beat must not poll the shared stack's jobs
    against another RunPod stand-in."""
    from tests import conftest

    # Default beat intervals: it idles through the rest of the session, so it should
    # cost little; its tests do not wait on the poller or the outbox sweeper.
    env = {"GPUBILL_ENV": "test", "GPUBILL_DATA_DIR": str(data_dir / "stack"),
           "GPUBILL_FLOWER_PORT": str(free_port())}
    if backend_name == "postgres":
        own = conftest._postgres(data_dir)
        backend = next(own)
        env["GPUBILL_DATABASE_URL"] = backend.database_url
        env["GPUBILL_BROKER_URL"] = backend.broker_url or ""
    else:
        own = None
        env["GPUBILL_DATABASE_URL"] = f"sqlite:///{data_dir / 'ledger.db'}"
    stack = Stack(env=env, workers="per_queue", flower=True, worker_concurrency=1)
    try:
        yield stack.start()
    finally:
        stack.stop()
        if own is not None:
            own.close()  # drops the database, flushes the Redis index


@contextmanager
def broker_down(stack: Stack) -> Iterator[None]:
    """Stop the broker (beat first, gracefully: under RedBeat its lock lives in the
    broker, and beat exits when that is unreachable — in production its supervisor
    restarts it), then start both again on the same port and data (AOF)."""
    old = stack.broker
    assert old is not None
    stack.child("beat").stop(15)
    old.stop()
    try:
        yield
    finally:
        stack.broker = EmbeddedBroker(old.data_dir, port=old.port).start()
        # Beat, and any worker kombu crashed on losing the broker (AttributeError in
        # restore_unacked, a known celery/kombu issue), start again together, as
        # production's supervisor does. Unacked messages are covered by the sweepers.
        stack.restart_exited()


@contextmanager
def throwaway_db(backend_name: str, tmp: Path) -> Iterator[str]:
    """An empty ledger database URL of this test's own (not migrated)."""
    with empty_database(tmp, "ready") as url:
        yield url


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """``app`` on a free 127.0.0.1 port (werkzeug, a thread) for the block; yields its URL."""
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


@contextmanager
def frozen_worker(stack: Stack) -> Iterator[None]:
    """``stack.paused("worker")`` at a moment the worker holds no SQLite write lock. A
    worker frozen inside a write transaction (an outbox sweep, say) blocks every other
    writer on the database file — the receiver storing a request, a CLI settling a job —
    until thawed: CI saw ``POST /v1/jobs`` take 10.2 s, past the client's timeout. On
    PostgreSQL writers of other rows do not wait, so one freeze is enough."""
    url = make_url(stack.env["GPUBILL_DATABASE_URL"])
    for _ in range(20):
        with stack.paused("worker"):
            if url.get_backend_name() != "sqlite" or _no_writer(str(url.database), wait_s=0):
                yield
                return
        # Thawed: wait (on the lock itself) for the write it was in to commit.
        _no_writer(str(url.database), wait_s=10)
    raise AssertionError("the worker held the SQLite write lock at every freeze")


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
