"""Which tests depend on ``GPUBILL_TEST_BACKEND``: `make test` runs those on both backends
and the rest (pricing, emulators, docs, code size, the demo on embedded defaults...) once.

A test depends on the backend when its fixtures reach ``backend`` (``db_url``,
``sessions``, ``stack``, ``new_database``...) or its module imports — directly or through
other ``tests.*`` modules (``tests.databases``, ``tests.stacks``...) — ``tests.conftest``,
the one place that reads ``GPUBILL_TEST_BACKEND``. When unsure it counts as dependent: a
test run on both backends costs time, one run on the wrong one loses a proof.
"""
from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
BACKEND_MODULE = "tests.conftest"


def _source(module: str) -> Path | None:
    base = PROJECT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@cache
def _test_imports(module: str) -> frozenset[str]:
    """The ``tests.*`` modules ``module`` names in any import (also inside functions);
    ``from tests.x import y`` yields ``tests.x`` and ``tests.x.y`` (y may be a module)."""
    path = _source(module)
    if path is None:
        return frozenset()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
            source = node.module if node.level == 0 else ".".join(filter(None, [base, node.module]))
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return frozenset(m for m in found if m == "tests" or m.startswith("tests."))


@cache
def imports_backend(module: str) -> bool:
    """True if ``module`` reaches ``tests.conftest`` through ``tests.*`` imports."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for dep in _test_imports(todo.pop()):
            if dep == BACKEND_MODULE:
                return True
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return False


def depends_on_backend(item: pytest.Item) -> bool:
    """True unless the test provably runs the same on either backend."""
    module = getattr(item, "module", None)
    if module is None:
        return True  # not a Python test function: no way to tell
    return "backend" in getattr(item, "fixturenames", ("backend",)) or imports_backend(module.__name__)
