"""Flower as gpubill runs it: ``python -m gpubill.flower_guard -A worker.app flower ...``
(the arguments of ``celery``), with two changes made before Flower starts.

* **``/metrics`` behind Flower's own login.** Flower 2.2's ``Metrics`` handler
  (``flower/views/monitor.py``) has no ``@tornado.web.authenticated``, unlike every page
  and ``/api`` handler, so ``--basic_auth``/``FLOWER_BASIC_AUTH`` left it open (issue 15,
  repro 7: task names, worker names and counts to anyone who reaches the port). We wrap
  its ``get`` in the same decorator; Flower's ``get_current_user`` then answers 401 with
  ``WWW-Authenticate: Basic`` without the login, as for the pages. Prometheus scrapes it
  with ``basic_auth: {username, password}``. ``/healthcheck`` stays open (probes).
* **ISO 8601 UTC times in Flower's log lines** (issue 16): tornado's ``LogFormatter``
  prints ``261206 21:39:56``; its ``formatTime`` is replaced by ``base.logs.iso_time``
  (``2026-12-06T21:39:56.123+00:00``). The rest of tornado's line format is kept.

Both are patches of a third-party class, so ``tests/test_docs.py`` checks
them against the real Flower of the test stack (a Flower upgrade that renames the
handler fails there, not silently).
"""
from __future__ import annotations

import logging

import tornado.log
import tornado.web


def protect_metrics() -> None:
    """Put Flower's ``/metrics`` behind the login its other handlers use (idempotent)."""
    from flower.views import monitor

    get = monitor.Metrics.get
    if getattr(get, "gpubill_protected", False):
        return
    protected = tornado.web.authenticated(get)
    protected.gpubill_protected = True  # type: ignore[attr-defined]  # a marker on the wrapped handler
    monitor.Metrics.get = protected


def iso_times() -> None:
    """Tornado's log lines (Flower's) carry ISO 8601 UTC times."""
    from base.logs import iso_time

    def format_time(self: logging.Formatter, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_time(record)

    tornado.log.LogFormatter.formatTime = format_time  # type: ignore[method-assign]


def main() -> None:
    """Patch, then hand over to ``celery`` (which runs ``flower`` from ``sys.argv``)."""
    protect_metrics()
    iso_times()
    from celery.__main__ import main as celery_main

    celery_main()


if __name__ == "__main__":
    main()
