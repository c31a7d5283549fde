"""The Celery app: reliability settings of docs/architecture.md "Delivery guarantees", queues, beat.

- ``acks_late`` + ``task_reject_on_worker_lost``: a task whose worker dies is redelivered,
  never lost; every task is idempotent, so redelivery is safe.
- ``worker_prefetch_multiplier=1``: a worker reserves one task at a time, so a crash
  strands at most one message until the visibility timeout.
- ``visibility_timeout`` (Redis) is far above the longest task + retry delay, so Redis
  never redelivers a task that is still running.
- Hard and soft time limits; explicit task names and queues; task events on for Flower.

The app itself imports no task code: beat and Flower (``-A worker.app``) need only task
*names*, which ``base.queues`` holds, so they skip ``services``/``ledger``/SQLAlchemy
(~38 MiB PSS each, docs/performance.md). A worker imports the task modules of the queues it
consumes (``worker.queue_tasks``) in its main process before the pool forks (``celeryd_init``);
routes are per queue, so it is never sent a task it has not registered.
"""
from __future__ import annotations

import gc
import logging
from typing import Any

from celery import Celery, signals
from celery.schedules import crontab
from kombu import Queue

from base import queues
from base.settings import get_settings
from worker import observability  # noqa: F401  (connects Celery's logging and task hooks)
from worker.queue_tasks import task_modules

TASK_SOFT_LIMIT_S = 60
TASK_HARD_LIMIT_S = 90
VISIBILITY_TIMEOUT_S = 3600


def make_celery() -> Celery:
    cfg = get_settings()
    if not cfg.broker_url:
        raise RuntimeError("GPUBILL_BROKER_URL is not set (gpubill up sets it for the embedded broker)")
    app = Celery("gpubill", broker=cfg.broker_url)  # no include: a worker imports its own (_preload)
    app.conf.update(
        task_serializer="json", accept_content=["json"],
        task_ignore_result=True, result_backend=None,
        task_acks_late=True, task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=TASK_SOFT_LIMIT_S, task_time_limit=TASK_HARD_LIMIT_S,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        broker_connection_retry_on_startup=True,
        task_queues=[Queue(q) for q in queues.QUEUES],
        task_default_queue=queues.JOBS,
        task_routes={name: {"queue": q} for name, q in queues.ROUTES.items()},
        worker_send_task_events=True, task_send_sent_event=cfg.task_sent_events,
        beat_schedule={
            "poll-silent-jobs": {"task": queues.POLL_SILENT, "schedule": cfg.poll_interval_s},
            "sweep-outbox": {"task": queues.SWEEP_OUTBOX, "schedule": cfg.outbox_interval_s},
            "sweep-expired-holds": {"task": queues.SWEEP_EXPIRED, "schedule": cfg.expiry_interval_s},
            "reconcile-nightly": {"task": queues.RECONCILE, "schedule": crontab(
                hour=cfg.reconcile_hour, minute=cfg.reconcile_minute)},
        },
        beat_schedule_filename=str(cfg.data_dir / "celerybeat-schedule"),
    )
    if cfg.broker_url.startswith(("redis://", "rediss://")):
        app.conf.update(redbeat_config(cfg.broker_url))
    return app


def redbeat_config(redis_url: str) -> dict[str, object]:
    """Exactly one beat: RedBeat's scheduler holds a lock in Redis, extended every tick
    (≤ ``beat_max_loop_interval`` s) and released when beat stops; a killed beat's lock
    expires after ``redbeat_lock_timeout`` s, so a restarted beat takes over. A second
    beat waits for the lock instead of scheduling twice."""
    return {"beat_scheduler": "redbeat.RedBeatScheduler", "redbeat_redis_url": redis_url,
            "redbeat_key_prefix": "gpubill:redbeat", "redbeat_lock_timeout": 30,
            "beat_max_loop_interval": 5}


app = make_celery()


def import_tasks(consumed: str | list[str] | None) -> list[str]:
    """Import (register) the task modules of ``consumed`` into ``app``; returns them.
    ``conf.include`` lists them too, as Celery's own ``--include`` does."""
    modules = task_modules(consumed)
    for module in modules:
        app.loader.import_task_module(module)
    app.conf.include = tuple(modules)
    return modules


@signals.celeryd_init.connect
def _preload(options: dict[str, Any] | None = None, **_: Any) -> None:
    """In the worker's main process, before the pool forks (``celeryd_init``, after
    Celery's own imports, before it consumes): the task modules of this worker's queues,
    then the runpod SDK if they call RunPod — pages shared with the pool processes."""
    consumed = (options or {}).get("queues")
    try:
        modules = import_tasks(consumed)
        from worker import context  # imported by every task module: nothing new, but checked here
    except Exception as exc:
        # Celery logs and swallows a signal handler's error, and a worker without its tasks
        # would discard their messages as unregistered: it must not start.
        raise SystemExit(f"task modules of queues {consumed or 'all'} failed to import: {exc!r}") from exc
    logging.getLogger(__name__).info("task modules for queues %s: %s", consumed or "all", ", ".join(modules))
    if context.preload_runpod_sdk(consumed):
        logging.getLogger(__name__).info("runpod SDK preloaded before the pool forks (queues: %s)",
                                         consumed or "all")


@signals.worker_init.connect
def _freeze_before_fork(**_: Any) -> None:
    """The last step in the worker's main process before the pool forks: move every object
    so far (modules, app, task code) to the collector's permanent generation. A pool
    process's full collections then never write to those objects' GC headers, which would
    copy (unshare) the pages they sit on — the CPython docs' advice for fork servers."""
    gc.collect()
    gc.freeze()
