"""Databases of a test's own on the backend under test: a SQLite file, or a new
PostgreSQL database dropped afterwards. For tests that corrupt, count or crash a whole
ledger and must not see (or spoil) the session's shared one."""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

from ledger.migrate import upgrade
from tests.conftest import BACKEND, PG_ADMIN_URL


@contextmanager
def empty_database(tmp: Path, prefix: str = "own") -> Iterator[str]:
    """The URL of a new, empty (not migrated) database."""
    if BACKEND != "postgres":
        yield f"sqlite:///{tmp / f'{prefix}-{secrets.token_hex(4)}.db'}"
        return
    name = f"gpubill_{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def migrated_database(tmp: Path, prefix: str = "own") -> Iterator[str]:
    """The URL of a new database migrated to head by Alembic, as production is."""
    with empty_database(tmp, prefix) as url:
        upgrade(url)
        yield url
