"""Helpers for the operator CLI tests: run ``gpubill`` through click's runner against a
database, and databases of a test's own (for corruption the shared one must never see).
"""
from __future__ import annotations

from typing import Any

from click.testing import CliRunner, Result

from base.settings import get_settings
from gpubill.cli import main
from tests.databases import migrated_database


def gpubill(db_url: str, *args: str, **env: str) -> Result:
    """``gpubill ARGS`` on ``db_url`` (settings re-read from the runner's environment)."""
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(main, list(args), env={"GPUBILL_DATABASE_URL": db_url, **env})
    finally:
        get_settings.cache_clear()


own_database = migrated_database  # a fresh ledger of the test's own


def summary_rows(output: str) -> dict[str, tuple[int | None, int]]:
    """The reconcile summary table as {check: (examined, violations)}."""
    rows: dict[str, tuple[int | None, int]] = {}
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("check")) + 2
    for line in lines[start:]:
        parts: list[Any] = line.rsplit(None, 2)
        if len(parts) != 3 or not parts[2].isdigit() or not (parts[1].isdigit() or parts[1] == "-"):
            break
        rows[parts[0].strip()] = (None if parts[1] == "-" else int(parts[1]), int(parts[2]))
    return rows
