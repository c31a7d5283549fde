"""Celery's logging and process hooks: JSON logs with the task's ids, metrics files.

- ``setup_logging``: Celery leaves logging to ``base.logs`` (JSON or terminal text,
  redacted) in the worker and in beat.
- ``task_prerun``/``task_postrun``: every line a task logs carries ``task`` (its explicit
  name), ``task_id`` and the id it works on — tasks take ids only, so an argument
  ``job_…`` is a ``job_id`` and ``evt_…`` an ``event_id``.
- ``worker_process_shutdown``: a dead pool process's live-gauge files are removed from
  the prometheus multiprocess directory (``mark_process_dead``).
- ``worker_init``: optionally serve the worker's own ``/metrics`` (compose).
"""
from __future__ import annotations

import os
from contextvars import Token
from typing import Any

from celery import signals

from base import logs

_ID_PREFIXES = {"job_": "job_id", "evt_": "event_id"}
_tokens: dict[str, Token[dict[str, str]]] = {}


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    logs.configure()


def task_ids(args: Any) -> dict[str, str]:
    """``{"job_id": ...}`` / ``{"event_id": ...}`` for the ids among a task's arguments;
    none of a kind that appears more than once (a batch binds each id as it goes)."""
    found: dict[str, list[str]] = {}
    for arg in args or ():
        if isinstance(arg, str):
            for prefix, key in _ID_PREFIXES.items():
                if arg.startswith(prefix):
                    found.setdefault(key, []).append(arg)
    return {key: ids[0] for key, ids in found.items() if len(ids) == 1}


@signals.task_prerun.connect
def _bind_task(task_id: str = "", task: Any = None, args: Any = None, **_: Any) -> None:
    _tokens[task_id] = logs.bind(task=getattr(task, "name", None), task_id=task_id, **task_ids(args))


@signals.task_postrun.connect
def _unbind_task(task_id: str = "", **_: Any) -> None:
    if (token := _tokens.pop(task_id, None)) is not None:
        logs.unbind(token)


@signals.worker_init.connect
def _serve_metrics(**_: Any) -> None:
    """With ``GPUBILL_WORKER_METRICS_PORT`` set, this worker's main process serves the
    merged metrics of its pool processes (compose: a metrics directory per container)."""
    from base.settings import get_settings

    port = get_settings().worker_metrics_port
    if port and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(port, registry=registry)


@signals.worker_process_shutdown.connect
def _mark_dead(pid: int | None = None, **_: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())
