"""Engines and sessions for PostgreSQL (production) and SQLite (embedded default).

SQLite: WAL so readers never block the writer, a busy timeout so concurrent processes
wait instead of failing, and ``BEGIN IMMEDIATE`` so every transaction takes the write
lock up front — a deferred transaction that later upgrades its lock can deadlock with
another writer and fail with SQLITE_BUSY at once. The pysqlite driver's own transaction
handling is switched off for this (SQLAlchemy "Serializable isolation / Savepoints"
recipe), which also makes SAVEPOINT work.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Engine, Result, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str, **kwargs: object) -> Engine:
    """An engine for ``url`` (``postgresql+psycopg://…`` or ``sqlite:///path``)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, **kwargs)

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
