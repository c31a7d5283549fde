"""The gpubill CLI through click's runner, on the real database."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from base.settings import get_settings
from gpubill.cli import main
from tests.gpubill.operator_support import summary_rows

EVENTS_ROW = "events parked or in the wrong mode (stripe)"

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
    """The shared database after whatever ran before. Other tests park Stripe events on
    purpose (an unknown price, an amount mismatch, a live event in test mode), which
    reconcile rightly reports (issue 12); every other check must be clean."""
    invariants()
    result = CliRunner().invoke(main, ["reconcile"])
    rows = summary_rows(result.output)
    assert rows and all(bad == 0 for name, (_, bad) in rows.items() if name != EVENTS_ROW), result.output
    if rows[EVENTS_ROW][1] == 0:
        assert result.exit_code == 0, result.output
        assert result.output.strip().endswith("0 violation(s)")
