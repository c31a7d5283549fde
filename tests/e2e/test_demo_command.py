"""`gpubill demo` (what `make demo` runs) as a user runs it: exit 0, the scenario's
report printed, and no process of its stack left behind."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def processes_of(data_dir: Path) -> list[int]:
    """Processes started for ``data_dir``: the children carry it in their environment,
    the broker in its command line, and their descendants too (a process that sets
    its title with setproctitle, as gunicorn does when it is installed, may overwrite
    its environment block)."""
    marker, path = f"GPUBILL_DATA_DIR={data_dir}".encode(), str(data_dir).encode()
    found: set[int] = set()
    parents: dict[int, int] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            parents[int(pid)] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):  # gone, or not ours to read
            continue
        if marker in environ.split(b"\0") or path in cmdline:
            found.add(int(pid))
    grew = True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return sorted(found)


def test_demo_command_succeeds_and_leaves_no_orphans(tmp_path) -> None:
    data_dir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUBILL_")}
    run = subprocess.run([sys.executable, "-m", "gpubill.cli", "demo", "--data-dir", str(data_dir)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "demo OK" in run.stdout and "ledger invariants: 0 violation(s)" in run.stdout
    assert processes_of(data_dir.resolve()) == []
    assert (data_dir / "ledger.db").exists() and (data_dir / "broker" / "appendonlydir").exists()
