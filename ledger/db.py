"""Engines and sessions for PostgreSQL (production) and SQLite (embedded default).

SQLite: WAL so readers never block the writer, a busy timeout so concurrent processes
wait instead of failing, and ``BEGIN IMMEDIATE`` so every transaction takes the write
lock up front — a deferred transaction that later upgrades its lock can deadlock with
another writer and fail with SQLITE_BUSY at once. The pysqlite driver's own transaction
handling is switched off for this (SQLAlchemy "Serializable isolation / Savepoints"
recipe), which also makes SAVEPOINT work.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Engine, Result, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str, *, ping_every_checkout: bool = False, **kwargs: object) -> Engine:
    """An engine for ``url`` (``postgresql+psycopg://…`` or ``sqlite:///path``).

    ``ping_every_checkout`` (PostgreSQL): SQLAlchemy's ``pool_pre_ping`` — one round trip
    per transaction so a connection the server dropped is never handed out. The receiver
    asks for it: its callers (the app's backend, Stripe) would otherwise get one 503 per
    stale pooled connection after a database restart (tests/stress/test_outages.py). The
    workers do not: a task retries an ``OperationalError`` by itself (``_server_engine``).
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        if ping_every_checkout:
            kwargs.setdefault("pool_recycle", POOL_RECYCLE_S)
            return create_engine(url, pool_pre_ping=True, **kwargs)
        return _server_engine(url, **kwargs)

    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        **kwargs,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: object) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


# A pooled connection is pinged on checkout only after it sat idle this long; one in
# steady use goes straight to work. Recycled after POOL_RECYCLE_S whatever its use.
PING_AFTER_IDLE_S = 30.0
POOL_RECYCLE_S = 1800


def _server_engine(url: str, **kwargs: object) -> Engine:
    """A PostgreSQL engine without ``pool_pre_ping`` on every checkout (one extra round
    trip per transaction — 9 % of a money operation's client CPU, issue 17).

    Disconnects are handled the way SQLAlchemy's "Dealing with Disconnects" describes
    (https://docs.sqlalchemy.org/en/20/core/pooling.html#dealing-with-disconnects):
    ``pool_recycle`` retires old connections; a connection idle longer than
    ``PING_AFTER_IDLE_S`` — where a server restart or an idle timeout has most likely
    dropped it — is pinged on checkout, and a failed ping raises ``DisconnectionError``
    so the pool replaces it and retries the checkout (the docs' custom pessimistic ping);
    a disconnect met mid-transaction raises ``OperationalError`` after SQLAlchemy has
    invalidated the pool ("Disconnect Handling - Optimistic"), which the worker tasks
    already retry (``worker.tasks``: ``except OperationalError: self.retry``).
    """
    kwargs.setdefault("pool_recycle", POOL_RECYCLE_S)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: object) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return  # new, or in steady use
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as dead:  # any driver error: the connection is gone
            raise DisconnectionError(f"pooled connection failed its ping: {dead}") from dead
        if not alive:
            raise DisconnectionError("pooled connection failed its ping")

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit (results outlive the transaction)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One DB transaction: commits on success, rolls back on any exception."""
    with factory() as session, session.begin():
        yield session


def rows_matched(result: Result[Any]) -> int:
    """Rows an ``UPDATE``/``DELETE`` run through ``Session.execute`` matched: the session
    types its answer as ``Result``, but for a DML statement it is a ``CursorResult``."""
    return cast(CursorResult[Any], result).rowcount
