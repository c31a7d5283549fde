"""Gunicorn settings for the receiver: ``gunicorn -c python:gpubill.gunicorn_conf``.

Bind address, worker count and logging come from ``GPUBILL_*`` settings; logs go
through ``base.logs`` (JSON lines, or text on a terminal, redacted), access log
included. ``child_exit`` tells prometheus_client's multiprocess mode that a worker died
(its live-gauge files are removed), per prometheus_client's gunicorn instructions.
"""
from __future__ import annotations

import os
from typing import Any

from base import logs
from base.settings import get_settings

_cfg = get_settings()
logs.add_secrets(logs.secret_values(_cfg))

wsgi_app = "webhook_receiver:create_app()"
bind = f"{_cfg.receiver_host}:{_cfg.receiver_port}"
workers = _cfg.receiver_workers
worker_class = "gthread"
threads = 4
graceful_timeout = 10
logconfig_dict = logs.dict_config(_cfg.log_format, _cfg.log_level)


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
