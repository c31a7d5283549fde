"""``gpubill wallet show|entries|adjust`` on the real database: an adjustment moves money
once, with its audit row in the same transaction; debits beyond available are refused
unless --allow-debt; invariants hold throughout."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from ledger.db import transaction
from ledger.models import ADJUSTMENTS, Adjustment, LedgerTransaction, Posting, Wallet
from tests.factories import FundedWalletFactory
from tests.gpubill.operator_support import gpubill

pytestmark = pytest.mark.integration


@pytest.fixture
def user(sessions) -> str:
    """A wallet with 100 credits from a top-up."""
    return FundedWalletFactory.create(sessions=sessions, prefix="wal", credits=100).user_id  # ref cs_{user}


def balance(sessions, user: str) -> tuple[int, int]:
    with transaction(sessions) as s:
        w = s.get(Wallet, user)
        return w.balance, w.held


def adjustments(sessions, user: str) -> list[Adjustment]:
    with transaction(sessions) as s:
        return list(s.scalars(select(Adjustment).where(Adjustment.user_id == user)))


def test_adjust_moves_money_once_with_its_audit_row(db_url, sessions, user, invariants) -> None:
    result = gpubill(db_url, "wallet", "adjust", user, "25", "--reason", "goodwill for outage",
                     "--operator", "ops-bob")
    assert result.exit_code == 0, result.output
    assert balance(sessions, user) == (125, 0)
    [audit] = adjustments(sessions, user)
    assert (audit.amount, audit.operator, audit.reason, audit.allow_debt) == (
        25, "ops-bob", "goodwill for outage", False)
    with transaction(sessions) as s:
        tx = s.get(LedgerTransaction, audit.transaction_id)
        assert (tx.kind, tx.amount, tx.op_key, tx.user_id) == ("adjust", 25, audit.op_key, user)
        legs = dict(s.execute(select(Posting.account_id, Posting.amount)
                              .where(Posting.transaction_id == tx.id)).all())
    assert legs == {f"wallet:{user}": 25, ADJUSTMENTS: -25}
    assert audit.op_key in result.output and "applied: +25 credits" in result.output
    invariants()


def test_same_key_applies_once_and_a_fresh_key_each_time_otherwise(db_url, sessions, user,
                                                                   invariants) -> None:
    args = ("wallet", "adjust", user, "-30", "--reason", "duplicate top-up", "--key", f"T-{user}")
    first, again = gpubill(db_url, *args), gpubill(db_url, *args)
    assert first.exit_code == again.exit_code == 0
    assert "already applied: -30 credits" in again.output
    assert balance(sessions, user) == (70, 0)
    assert len(adjustments(sessions, user)) == 1
    conflict = gpubill(db_url, "wallet", "adjust", user, "-40", "--reason", "x", "--key", f"T-{user}")
    assert conflict.exit_code == 1 and "replayed as -40" in conflict.output
    # Without --key every run is a new adjustment.
    for _ in range(2):
        assert gpubill(db_url, "wallet", "adjust", user, "1", "--reason", "r").exit_code == 0
    assert balance(sessions, user) == (72, 0)
    assert len({a.op_key for a in adjustments(sessions, user)}) == 3
    invariants()


def test_debit_beyond_available_is_refused_unless_allow_debt(db_url, sessions, user,
                                                             invariants) -> None:
    refused = gpubill(db_url, "wallet", "adjust", user, "-150", "--reason", "chargeback")
    assert refused.exit_code == 1 and "use --allow-debt" in refused.output
    assert balance(sessions, user) == (100, 0) and adjustments(sessions, user) == []
    allowed = gpubill(db_url, "wallet", "adjust", user, "-150", "--reason", "chargeback",
                      "--allow-debt")
    assert allowed.exit_code == 0, allowed.output
    assert balance(sessions, user) == (-50, 0)
    assert adjustments(sessions, user)[0].allow_debt is True
    invariants()  # audited debt is allowed debt (invariant 3)


def test_bad_input_is_refused_without_moving_money(db_url, sessions, user) -> None:
    cases = [
        (("wallet", "adjust", user, "0", "--reason", "x"), "must not be 0"),
        (("wallet", "adjust", user, "5"), "Missing option '--reason'"),
        (("wallet", "adjust", user, "5", "--reason", "   "), "must not be empty"),
        (("wallet", "adjust", user, "1.5", "--reason", "x"), "is not a valid integer"),
        (("wallet", "adjust", "bad user!", "5", "--reason", "x"), "must match"),
        (("wallet", "adjust", user + "\n", "5", "--reason", "x"), "must match"),  # issue 15 repro 6
    ]
    for args, message in cases:
        result = gpubill(db_url, *args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    assert balance(sessions, user) == (100, 0)
    with transaction(sessions) as s:
        assert s.scalar(select(func.count()).where(Adjustment.user_id == user)) == 0


def test_show_and_entries(db_url, sessions, user) -> None:
    assert gpubill(db_url, "wallet", "adjust", user, "-10", "--reason", "fee").exit_code == 0
    shown = gpubill(db_url, "wallet", "show", user)
    assert shown.exit_code == 0
    assert re.search(r"balance\s+90 credits", shown.output)
    assert re.search(r"available\s+90 credits", shown.output)
    entries = gpubill(db_url, "wallet", "entries", user)
    assert entries.exit_code == 0
    lines = entries.output.splitlines()[2:]
    assert lines[0].split()[1:3] == ["adjust", "-10"]  # newest first
    assert lines[1].split()[1:4] == ["topup", "100", f"cs_{user}"]
    first = gpubill(db_url, "wallet", "entries", user, "--limit", "1")
    cursor = re.search(r"next cursor: (\S+)", first.output).group(1)
    second = gpubill(db_url, "wallet", "entries", user, "--limit", "1", "--cursor", cursor)
    assert "topup" in second.output and "adjust" not in second.output
    assert "next cursor" not in second.output


def test_unknown_wallet_and_bad_cursor_are_errors(db_url) -> None:
    missing = gpubill(db_url, "wallet", "show", "nobody-here")
    assert missing.exit_code == 1 and "no wallet for user nobody-here" in missing.output
    bad = gpubill(db_url, "wallet", "entries", "nobody-here", "--cursor", "!!")
    assert bad.exit_code == 2 and "invalid cursor" in bad.output


def test_an_unmigrated_database_is_a_clear_error(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    for args in (("wallet", "show", "x"), ("reconcile",), ("keys", "list"),
                 ("report", "margins"), ("jobs", "show", "job_x")):
        result = gpubill(url, *args)
        assert result.exit_code == 1, (args, result.output)
        assert "gpubill db upgrade" in result.output and "Traceback" not in result.output
