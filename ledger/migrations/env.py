"""Alembic environment: runs revisions against the URL set by ``ledger.migrate``.

SQLite: batch mode rebuilds a table (copy, DROP, rename), which fails while a table
referencing it has rows and ``PRAGMA foreign_keys`` is on (our engines turn it on).
As Alembic's batch docs ("Dealing with Referencing Foreign Keys") and SQLite's ALTER
TABLE procedure (https://www.sqlite.org/lang_altertable.html, section 7) prescribe,
enforcement is off while revisions run and ``PRAGMA foreign_key_check`` must find no
violation before the transaction commits.
"""
from typing import Any

from alembic import context
from sqlalchemy import Connection

from ledger.db import make_engine
from ledger.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("sqlalchemy.url is not set: run revisions through ledger.migrate")
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:  # outside any transaction: inside one the pragma is a no-op
                _driver(connection).execute("PRAGMA foreign_keys=OFF")
            # Batch mode lets later revisions ALTER tables on SQLite too.
            context.configure(connection=connection, target_metadata=target_metadata,
                              render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"foreign keys broken by the migration: {broken[:5]}")
    finally:
        engine.dispose()


def _driver(connection: Connection) -> Any:
    """The pysqlite connection under ``connection``, without beginning a transaction."""
    return connection.connection.driver_connection


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
