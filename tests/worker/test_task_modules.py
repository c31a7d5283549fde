"""Which processes import task code (docs/performance.md "Memory"): beat and Flower load
``worker.app`` as Celery and Flower do and import none of it; a worker registers exactly
the tasks ``base.queues.ROUTES`` sends to the queues it consumes — never fewer, or it
would discard their messages as unregistered. Each probe runs in a fresh interpreter
(registration and ``sys.modules`` only grow)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from base import queues
from worker.queue_tasks import TASK_MODULES, task_modules

# What task code pulls in: each of these is megabytes a scheduler does not need.
TASK_CODE = ("worker.tasks", "services", "ledger", "gateways", "sqlalchemy", "runpod", "stripe")

LOADERS = {
    # celery beat: Beat.init_loader (loader.init_worker + finalize) before it schedules.
    "beat": "from celery.apps.beat import Beat\nBeat(app=app).init_loader()",
    # Flower: its app imports the Celery app's default modules on construction.
    "flower": "from flower.app import Flower\nFlower(capp=app)",
}

PROBE = """
import json, sys
from worker.app import app
{load}
prefixes = {prefixes!r}
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in prefixes
                        or m.startswith('worker.tasks'))))
"""

WORKER_PROBE = """
import json
from worker import app as module
module._preload(options={options!r})  # the celeryd_init hook, as Celery sends it
print(json.dumps(sorted(n for n in module.app.tasks if not n.startswith('celery.'))))
"""


def _run(code: str) -> list[str]:
    env = {**os.environ, "GPUBILL_BROKER_URL": "redis://127.0.0.1:1/0"}  # never connected to
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("service", sorted(LOADERS))
def test_beat_and_flower_import_no_task_code(service: str) -> None:
    assert _run(PROBE.format(load=LOADERS[service], prefixes=TASK_CODE)) == []


def _routed_to(consumed: set[str]) -> list[str]:
    return sorted(name for name, queue in queues.ROUTES.items() if queue in consumed)


@pytest.mark.parametrize("queue", queues.QUEUES)
def test_a_per_queue_worker_registers_exactly_its_queues_tasks(queue: str) -> None:
    assert _run(WORKER_PROBE.format(options={"queues": [queue]})) == _routed_to({queue})


@pytest.mark.parametrize("options", [{"queues": None}, {"queues": []}, {}])
def test_the_single_worker_registers_every_routed_task(options: dict[str, object]) -> None:
    assert _run(WORKER_PROBE.format(options=options)) == sorted(queues.ROUTES)


def test_the_mapping_names_every_queue_and_celery_queue_strings_work() -> None:
    assert set(TASK_MODULES) == set(queues.QUEUES)
    assert task_modules("maintenance, notify") == [*TASK_MODULES["maintenance"], *TASK_MODULES["notify"]]
    assert task_modules(None) == task_modules("") == [m for q in queues.QUEUES for m in TASK_MODULES[q]]
    assert task_modules(["no-such-queue"]) == []


def test_a_worker_whose_task_modules_fail_to_import_does_not_start() -> None:
    """Celery swallows a signal handler's error; the hook exits instead of consuming
    messages it would discard as unregistered."""
    code = ("from worker import app as module, queue_tasks\n"
            "queue_tasks.TASK_MODULES['notify'] = ('worker.tasks.no_such_module',)\n"
            "module._preload(options={'queues': ['notify']})\n"
            "print('consuming')")
    env = {**os.environ, "GPUBILL_BROKER_URL": "redis://127.0.0.1:1/0"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 1 and "consuming" not in run.stdout
    assert "task modules of queues ['notify'] failed to import" in run.stderr
