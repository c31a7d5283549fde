"""The gpubill CLI through click's runner, on the real database."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from gpubill.cli import main
from gpubill.settings import get_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_env(db_url, monkeypatch):
    monkeypatch.setenv("GPUBILL_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_db_upgrade_is_idempotent(cli_env) -> None:
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0 and "database at head" in result.output


def test_reconcile_is_clean_on_a_correct_ledger(cli_env, invariants) -> None:
    invariants()
    result = CliRunner().invoke(main, ["reconcile"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("0 violation(s)")
