"""The job status table (``ledger.transitions``): the code changes a job's status only
through its steps, the table is the one the docs describe, and an illegal change is
refused without writing anything."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ledger import transitions as t
from ledger.models import Job, JobStatus as S

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledger", "services", "webhook_receiver", "worker", "gpubill", "pricing", "base", "gateways")
STEP_NAMES = {name for name, value in vars(t).items() if isinstance(value, t.Transition)}
# Calls that change a job's status, and the position of their step argument.
STEP_ARG = {"finish": 2, "release": 2, "move": 1, "check": 1}

# The table as docs/architecture.md "Job lifecycle" draws it, written out independently.
RUN, BEFORE = {S.DISPATCHED, S.IN_PROGRESS}, {S.REQUESTED, S.HELD}
EXPECTED = ({(S.REQUESTED, S.HELD), (S.REQUESTED, S.REJECTED), (S.HELD, S.DISPATCHED),
             (S.DISPATCHED, S.IN_PROGRESS)}
            | {(a, b) for a in BEFORE for b in (S.CANCELLED, S.EXPIRED, S.FAILED)}
            | {(a, b) for a in RUN for b in (S.COMPLETED, S.FAILED, S.TIMED_OUT, S.CANCELLED,
                                              S.EXPIRED, S.LOST)})


def _sources() -> list[tuple[Path, ast.AST]]:
    files = [f for p in PACKAGES for f in sorted((ROOT / p).rglob("*.py")) if "migrations" not in f.parts]
    return [(f, ast.parse(f.read_text(), str(f))) for f in files]


def _callee(call: ast.Call) -> str:
    return call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")


def _is_step(node: ast.expr, params: set[str]) -> bool:
    """``t.HOLD`` / ``transitions.HOLD`` (a step of the table), ``t.RELEASE_ON[state]``, or a
    parameter annotated ``Transition`` passed on."""
    if isinstance(node, ast.Name):
        return node.id in params
    if isinstance(node, ast.Subscript):
        return isinstance(node.value, ast.Attribute) and node.value.attr == "RELEASE_ON"
    return isinstance(node, ast.Attribute) and node.attr in STEP_NAMES


def _changes_status(call: ast.Call) -> bool:
    """``finish``/``release`` of ``services.lifecycle`` (called bare or as ``lifecycle.…``;
    not ``ops.release`` or ``locks.release``), ``t.move``/``t.check``."""
    name, func = _callee(call), call.func
    owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else "lifecycle"
    if name in ("move", "check"):
        return owner in ("t", "transitions")
    return name in ("finish", "release") and owner == "lifecycle"


def _updates_jobs(call: ast.Call) -> bool:
    """``update(Job)…values(status=…)`` anywhere down the call chain."""
    node: ast.expr = call.func
    while isinstance(node, (ast.Attribute, ast.Call)):
        if isinstance(node, ast.Call) and _callee(node) == "update":
            return any(isinstance(a, ast.Name) and a.id == "Job" for a in node.args)
        node = node.func if isinstance(node, ast.Call) else node.value
    return False


def _status_writes(tree: ast.AST) -> list[tuple[int, str]]:
    """Status changes of a job not made by a step of the table: (line, what)."""
    bad = []
    params = {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)
              and a.annotation is not None and "Transition" in ast.unparse(a.annotation)}
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else []
        for target in targets:
            for leaf in (target.elts if isinstance(target, ast.Tuple) else [target]):
                if (isinstance(leaf, ast.Attribute) and leaf.attr == "status"
                        and isinstance(leaf.value, ast.Name) and leaf.value.id == "job"):
                    bad.append((node.lineno, "job.status assigned"))
        if isinstance(node, ast.Call) and _callee(node) == "values" and _updates_jobs(node) \
                and any(k.arg == "status" for k in node.keywords):
            bad.append((node.lineno, "UPDATE jobs SET status"))
        if isinstance(node, ast.Call) and _changes_status(node):
            index = STEP_ARG[_callee(node)]
            if len(node.args) > index and not _is_step(node.args[index], params):
                bad.append((node.lineno, f"{_callee(node)}() with {ast.unparse(node.args[index])}"))
    return bad


def test_every_status_change_in_the_code_is_a_step_of_the_table() -> None:
    found, steps_used = [], set()
    for path, tree in _sources():
        if path == ROOT / "ledger" / "transitions.py":
            continue  # the one place that writes ``job.status``
        found += [f"{path.relative_to(ROOT)}:{line}: {what}" for line, what in _status_writes(tree)]
        steps_used |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                       and (n.attr in STEP_NAMES or n.attr == "RELEASE_ON")}
    assert found == []
    if "RELEASE_ON" in steps_used:  # ``t.RELEASE_ON[state]`` takes FAIL, TIME_OUT, CANCEL
        steps_used |= {name for name in STEP_NAMES if getattr(t, name) in t.RELEASE_ON.values()}
    # Each step is used; each step's (from, to) pairs are in the table.
    assert steps_used >= STEP_NAMES - {"Transition", "IllegalTransition"}
    assert {(a, step.target) for step in t.STEPS for a in step.sources} == t.ALLOWED


def test_the_table_is_the_documented_one() -> None:
    assert t.ALLOWED == EXPECTED
    assert all(a not in S.TERMINAL for a, _ in t.ALLOWED)  # an ended job never changes
    assert {b for _, b in t.ALLOWED} >= S.TERMINAL  # every end is reachable


@pytest.mark.parametrize("status", list(S))
def test_an_illegal_transition_is_refused_and_changes_nothing(status: S) -> None:
    for step in t.STEPS:
        job = Job(id="job_1", status=status)
        if (status, step.target) in EXPECTED and status in step.sources:
            t.move(job, step)
            assert job.status == step.target
            continue
        with pytest.raises(t.IllegalTransition, match=step.name):
            t.move(job, step)
        assert job.status == status
