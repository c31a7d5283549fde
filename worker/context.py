"""Per-process resources of a worker: settings, DB sessions, gateways, the publisher.

Created lazily in each process — after the prefork pool forks — because DB connections
and HTTP sessions must not be shared across processes.
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from base import after_commit, queues
from base.settings import Settings, get_settings
from gateways.runpod import RunPodGateway
from ledger.db import make_engine, make_sessionmaker

if TYPE_CHECKING:
    from gateways.stripe import StripeGateway


def settings() -> Settings:
    return get_settings()


def preload_db_driver() -> None:
    """Import the configured database's DBAPI module (psycopg for PostgreSQL) now.

    SQLAlchemy imports it lazily, at the first ``create_engine`` — in a worker, after
    the prefork pool forked (``_factory`` below), so every pool process imported its own
    copy (~12 MiB RSS each for psycopg + the dialect; 5 % of a pool process's CPU while
    jobs ran, docs/performance.md). Imported in the main process, which this module is
    first imported in, its pages are shared by every pool process. No connection is made.
    """
    from sqlalchemy.engine import make_url

    make_url(settings().sqlalchemy_url).get_dialect().import_dbapi()


preload_db_driver()

RUNPOD_QUEUES = frozenset({queues.JOBS, queues.GPU_STATUS})  # their tasks call RunPod


def preload_runpod_sdk(consumed: str | list[str] | None) -> bool:
    """Import the runpod SDK now, in the worker's main process, if this worker consumes a
    queue whose tasks call RunPod (``consumed``: Celery's ``--queues``; None or empty means
    every queue, as ``--workers single`` runs). Returns whether it did.

    ``gateways.runpod`` imports the SDK only when a gateway is built, so processes that
    never call RunPod skip its ~450 modules (~34 MiB, docs/performance.md); but a prefork
    pool process building its gateway after the fork would import its own copy each (and
    again after every restart). Imported before the pool forks, the pages are shared.
    """
    names = consumed.split(",") if isinstance(consumed, str) else list(consumed or [])
    if names and not RUNPOD_QUEUES & {n.strip() for n in names}:
        return False
    import runpod  # noqa: F401  (pages shared with the pool processes)

    return True


@lru_cache(maxsize=4)
def _factory(pid: int) -> sessionmaker[Session]:
    factory = make_sessionmaker(make_engine(settings().sqlalchemy_url))
    if settings().broker_url:  # what services queue with publish_after_commit goes out at commit
        after_commit.install(factory, publish)
    return factory


def sessions() -> sessionmaker[Session]:
    """The session factory of this process (a new engine after a fork)."""
    return _factory(os.getpid())


@lru_cache(maxsize=4)
def _gateway(pid: int) -> RunPodGateway:
    cfg = settings()
    return RunPodGateway(cfg.runpod_base_url, cfg.runpod_api_key.get_secret_value(),
                         cfg.runpod_timeout_s)


def runpod() -> RunPodGateway:
    return _gateway(os.getpid())


@lru_cache(maxsize=4)
def _stripe(pid: int) -> StripeGateway:
    from gateways.stripe import StripeGateway  # the SDK client only where it is used

    return StripeGateway(settings())


def stripe() -> StripeGateway:
    """This process's Stripe gateway (one ``StripeClient`` and its HTTP session)."""
    return _stripe(os.getpid())


@lru_cache(maxsize=4)
def _publisher(pid: int) -> Celery:
    cfg = settings()
    return queues.producer(cfg.broker_url, sent_events=cfg.task_sent_events)


def publish(task_name: str, *args: str, countdown: float | None = None) -> bool:
    """Enqueue by name now (``base.queues.enqueue``). The after-commit listener's publish
    function; called directly only for work no commit makes due (the sweepers, a Stripe
    batch re-scheduling an event): everything else uses ``publish_after_commit``."""
    return queues.enqueue(_publisher(os.getpid()), task_name, *args, countdown=countdown)


def webhook_url(token: str) -> str:
    """Where RunPod POSTs a job's completion: ``/webhooks/runpod/{token}`` on the receiver."""
    return f"{settings().public_base_url.rstrip('/')}/webhooks/runpod/{token}"
