"""The Alembic revisions build exactly the schema the models describe."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select

from ledger.db import make_engine
from ledger.migrate import at_head
from ledger.models import SYSTEM_ACCOUNTS, Account, Base

pytestmark = pytest.mark.integration


def test_migrations_match_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            system = set(conn.scalars(select(Account.id).where(Account.kind == "system")))
    finally:
        engine.dispose()
    assert diff == [], diff
    assert system == set(SYSTEM_ACCOUNTS)
    assert at_head(db_url)
