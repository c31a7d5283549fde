"""Isolated databases for stress tests: each gets a fresh, migrated ledger of its own,
so whole-ledger invariant checks see only what the test did."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.databases import migrated_database


@pytest.fixture
def new_database(tmp_path: Path, backend) -> Iterator[Callable[[], str]]:  # type: ignore[no-untyped-def]
    """Call to get the URL of a fresh isolated database (any number per test)."""
    with ExitStack() as stack:
        yield lambda: stack.enter_context(migrated_database(tmp_path, "iso"))
