"""Size limits of the house style (issue 14): no module over ``MAX_MODULE_LINES`` lines and no
function over ``MAX_FUNCTION_LINES`` lines, outside ``tests/`` and the Alembic revisions.

Counted with ``ast``: a module's lines are its physical lines; a function's run from its
``def`` line to its last line (``end_lineno``), nested defs included — a route
registration full of closures counts whole. A failure names every offender with its
size, so one run shows all the work."""
from __future__ import annotations

import ast
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 50
# Directories never scanned (relative to ROOT): the tests themselves, the generated-then-
# frozen Alembic revisions, and anything that is not project source.
EXCLUDED = ("tests/", "ledger/migrations/versions/")
SKIP_DIRS = {"__pycache__", "node_modules", "build", "dist", "var"}

# Files exempt from the limits, each with its reason. Empty since issue 14 split the last
# ones; do not add to it — split the code instead.
ALLOWED: dict[str, str] = {}


def python_files(root: Path) -> list[str]:
    """Project ``.py`` files under ``root`` as POSIX paths relative to it, minus ``EXCLUDED``,
    hidden directories (``.venv``, ``.git``) and ``SKIP_DIRS``."""
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder).relative_to(root)
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS  # prune
                   and (here / d).as_posix() + "/" not in EXCLUDED]
        for file in files:
            name = (Path(folder) / file).relative_to(root).as_posix()
            if file.endswith(".py") and not name.startswith(EXCLUDED):
                found.append(name)
    return sorted(found)


def oversized(root: Path, allowed: dict[str, str] | None = None) -> list[str]:
    """Every module over ``MAX_MODULE_LINES`` and function over ``MAX_FUNCTION_LINES`` lines
    under ``root``, as ``"path: N lines"`` / ``"path:line name(): N lines"``; files in
    ``allowed`` are skipped."""
    allowed = ALLOWED if allowed is None else allowed
    found = []
    for name in python_files(root):
        if name in allowed:
            continue
        source = (root / name).read_text(encoding="utf-8")
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES:
            found.append(f"{name}: module of {lines} lines (max {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(source, filename=name)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    found.append(f"{name}:{node.lineno} {node.name}(): {size} lines "
                                 f"(max {MAX_FUNCTION_LINES})")
    return found


def test_no_module_or_function_over_the_limits() -> None:
    found = oversized(ROOT)
    assert not found, "split these (one concept per module, steps per function):\n" + "\n".join(found)


def test_allow_list_names_only_files_still_over() -> None:
    """An entry whose file is gone or within the limits is stale: remove it."""
    everything = oversized(ROOT, {})
    stale = [name for name in ALLOWED if not any(f.startswith(f"{name}:") for f in everything)]
    assert not stale, f"no longer over the limits, remove from ALLOWED: {stale}"


def test_the_check_names_a_long_function_and_a_long_module(tmp_path: Path) -> None:
    """The checker itself: a 51-line function (nested def inside) and a 301-line module are
    named; 50 and 300 pass; tests/ and migrations are not scanned."""
    body = "\n".join(f"    x{i} = {i}" for i in range(48))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "ok.py").write_text(f"def fits():\n{body}\n    return 0\n")  # 50 lines
    (tmp_path / "pkg" / "long.py").write_text(
        f"def too_long():\n    def inner():\n        pass\n{body}\n")  # 1 + 2 + 48 = 51 lines
    (tmp_path / "pkg" / "big.py").write_text("x = 0\n" * 301)
    (tmp_path / "pkg" / "edge.py").write_text("x = 0\n" * 300)
    for skipped in ("tests", "ledger/migrations/versions"):
        (tmp_path / skipped).mkdir(parents=True)
        (tmp_path / skipped / "huge.py").write_text("x = 0\n" * 400)
    found = oversized(tmp_path, {})
    assert found == ["pkg/big.py: module of 301 lines (max 300)",
                     "pkg/long.py:1 too_long(): 51 lines (max 50)"]
    assert oversized(tmp_path, {"pkg/big.py": "", "pkg/long.py": ""}) == []
