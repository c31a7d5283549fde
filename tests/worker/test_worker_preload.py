"""A worker's main process imports the database driver before the prefork pool forks
(``worker.context.preload_db_driver``, docs/performance.md), so pool processes share its
pages instead of each importing psycopg at its first query — and no connection is made."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _modules_after_worker_import(database_url: str) -> set[str]:
    code = ("import sys, worker.app\n"
            "worker.app.import_tasks(None)\n"  # what the single worker imports
            "print(' '.join(k for k in ('psycopg', 'sqlite3') if k in sys.modules))")
    env = {**os.environ, "GPUBILL_BROKER_URL": "redis://127.0.0.1:6379/0",
           "GPUBILL_DATABASE_URL": database_url}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_postgres_driver_is_imported_before_the_fork_without_connecting() -> None:
    # Port 1: nothing listens there, so any connection attempt would fail the import.
    assert "psycopg" in _modules_after_worker_import("postgresql+psycopg://nobody@127.0.0.1:1/none")


def test_sqlite_deployments_do_not_load_psycopg() -> None:
    assert _modules_after_worker_import("sqlite:////tmp/gpubill-preload-test.db") == {"sqlite3"}


RUNPOD_PROBE = """
import sys

import pytest
from worker import context
print(context.preload_runpod_sdk({queues!r}), 'runpod' in sys.modules)
"""


@pytest.mark.parametrize(("consumed", "loaded"), [
    ("maintenance,notify,stripe", False),  # no RunPod calls: the SDK stays out
    (["notify"], False),
    ("jobs", True), (["gpu_status", "notify"], True),  # they call RunPod: shared before the fork
    (None, True), ([], True),  # every queue (--workers single)
])
def test_the_runpod_sdk_is_preloaded_only_by_workers_that_call_runpod(consumed, loaded) -> None:
    """``worker.app``'s ``celeryd_init`` hook imports the SDK in the worker's main process
    when its queues call RunPod, so prefork pool processes share it (docs/performance.md)."""
    env = {**os.environ, "GPUBILL_BROKER_URL": "redis://127.0.0.1:1/0"}  # never connected to
    run = subprocess.run([sys.executable, "-c", RUNPOD_PROBE.format(queues=consumed)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == [str(loaded), str(loaded)]


def test_the_main_process_freezes_its_objects_before_the_pool_forks() -> None:
    """``worker_init`` (the last signal before the pool forks) moves the main process's
    objects to the permanent generation: pool processes' collections leave their pages
    shared (docs/performance.md "Memory": ~40 MiB per per-queue worker)."""
    code = ("import gc\nfrom celery import signals\nimport worker.app\n"
            "before = gc.get_freeze_count()\nsignals.worker_init.send(sender=None)\n"
            "print(before, gc.get_freeze_count())")
    env = {**os.environ, "GPUBILL_BROKER_URL": "redis://127.0.0.1:1/0"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    before, after = map(int, run.stdout.split())
    assert before == 0 and after > 10_000  # every module, class and function loaded so far
