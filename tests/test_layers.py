"""The layering of docs/architecture.md ("Layers") holds: no package imports one above it.

The contracts live in pyproject.toml ``[tool.importlinter]``; import-linter builds the
import graph (lazy imports inside functions included) and checks them. A broken contract
fails this test with import-linter's report of the offending import chain."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_package_imports_a_layer_above_it() -> None:
    run = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout
