"""Which task modules serve which queue: a worker imports only those of the queues it
consumes (``worker.app``), so e.g. the notify worker never loads the job lifecycle.

Routes are per queue (``base.queues.ROUTES``), so a worker importing its queues' modules
has registered every task it can be sent (``tests/worker/test_task_modules.py``).
"""
from __future__ import annotations

from base import queues

# Queue → the task modules defining the tasks ``base.queues.ROUTES`` sends to it.
TASK_MODULES: dict[str, tuple[str, ...]] = {
    queues.STRIPE: ("worker.tasks.stripe",),
    queues.JOBS: ("worker.tasks.jobs",),
    queues.GPU_STATUS: ("worker.tasks.gpu_status",),
    queues.MAINTENANCE: ("worker.tasks.maintenance", "worker.tasks.reconcile"),
    queues.NOTIFY: ("worker.tasks.notify",),
}


def task_modules(consumed: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """The task modules (dotted names) a worker consuming ``consumed`` imports; ``consumed``
    is Celery's ``--queues``, a comma-separated string or a list; None or empty means every
    queue, as ``--workers single`` runs. An unknown queue adds none."""
    names = consumed.split(",") if isinstance(consumed, str) else list(consumed or [])
    chosen = [n.strip() for n in names if n.strip()] or list(queues.QUEUES)
    return [m for q in chosen for m in TASK_MODULES.get(q, ())]
