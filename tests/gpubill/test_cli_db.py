"""``gpubill db current | history | downgrade``: Alembic's own commands on the configured
ledger (issue 16), on a database of their own."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
VERSIONS = Path(__file__).resolve().parents[2] / "ledger" / "migrations" / "versions"


def _db(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GPUBILL_")},
           "GPUBILL_DATABASE_URL": url, "GPUBILL_DATA_DIR": "/nonexistent-no-stack"}
    return subprocess.run([sys.executable, "-m", "gpubill.cli", "db", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_db_current_history_and_downgrade(new_database) -> None:
    url = new_database()
    revisions = sorted(p.name.split("_")[0] for p in VERSIONS.glob("0*.py"))  # from the files
    head, previous = revisions[-1], revisions[-2]
    assert _db(url, "upgrade").returncode == 0
    current = _db(url, "current")
    assert current.returncode == 0 and current.stdout.split() == [head, "(head)"], current.stderr
    history = _db(url, "history")
    assert history.returncode == 0 and all(f"-> {r}" in history.stdout for r in revisions)
    down = _db(url, "downgrade", "-1")
    assert down.returncode == 0, down.stderr
    assert _db(url, "current").stdout.split() == [previous]
    assert _db(url, "upgrade").returncode == 0 and _db(url, "current").stdout.split() == [head, "(head)"]
