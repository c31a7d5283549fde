"""The task contract between producers (receiver, beat, tasks) and workers: names and
queues, and a publisher that never loses a committed row when the broker is down.

Producers send tasks **by name** (the receiver never imports task code). Rows are
committed before publishing; if publishing fails the row stays pending and the outbox
sweeper (``maintenance.sweep_outbox``) publishes it again.
"""
from __future__ import annotations

import logging

from celery import Celery

log = logging.getLogger(__name__)

STRIPE, JOBS, GPU_STATUS, MAINTENANCE = "stripe", "jobs", "gpu_status", "maintenance"
NOTIFY = "notify"  # outbound job webhooks to the app: a slow app never delays jobs
QUEUES = (STRIPE, JOBS, GPU_STATUS, MAINTENANCE, NOTIFY)

PROCESS_STRIPE_EVENT = "stripe.process_event"
PLACE_HOLD = "jobs.place_hold"
DISPATCH = "jobs.dispatch"
REFRESH_STATUS = "gpu_status.refresh"
POLL_SILENT = "gpu_status.poll_silent"
SWEEP_OUTBOX = "maintenance.sweep_outbox"
CANCEL = "jobs.cancel"
EXPIRE = "jobs.expire"
CANCEL_STRAY = "jobs.cancel_stray"  # a second RunPod job for one of ours (issue 11)
SWEEP_EXPIRED = "maintenance.sweep_expired"
SEND_NOTIFICATION = "notify.send"
RECONCILE = "maintenance.reconcile"

ROUTES: dict[str, str] = {
    PROCESS_STRIPE_EVENT: STRIPE,
    PLACE_HOLD: JOBS,
    DISPATCH: JOBS,
    REFRESH_STATUS: GPU_STATUS,
    POLL_SILENT: MAINTENANCE,
    SWEEP_OUTBOX: MAINTENANCE,
    CANCEL: JOBS,
    EXPIRE: JOBS,
    CANCEL_STRAY: JOBS,
    SWEEP_EXPIRED: MAINTENANCE,
    SEND_NOTIFICATION: NOTIFY,
    RECONCILE: MAINTENANCE,
}

# Publishing waits at most ~1 s for the broker: the caller's row is already committed,
# and the sweeper covers a failed publish, so a fast answer beats a long retry.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.3, "interval_max": 0.5}


def producer(broker_url: str, sent_events: bool = True) -> Celery:
    """A Celery app used only to publish tasks by name to ``broker_url``; ``sent_events``:
    also send a ``task-sent`` event per task for Flower (settings ``task_sent_events``)."""
    app = Celery("gpubill-producer", broker=broker_url, set_as_current=False)
    app.conf.update(task_routes={n: {"queue": q} for n, q in ROUTES.items()},
                    task_serializer="json", task_send_sent_event=sent_events,
                    broker_connection_timeout=2, broker_connection_retry_on_startup=True)
    return app


def enqueue(app: Celery, task_name: str, *args: str, countdown: float | None = None) -> bool:
    """Publish ``task_name(*args)`` (ids only), to run after ``countdown`` seconds if
    given. Returns False, logged, if the broker is unreachable — the committed row is
    picked up later by the outbox sweeper."""
    try:
        app.send_task(task_name, args=list(args), queue=ROUTES[task_name], countdown=countdown,
                      retry=True, retry_policy=PUBLISH_RETRY)
        return True
    except Exception:  # kombu raises many transport errors; all mean "not published"
        log.warning("publish of %s%s failed; the outbox sweeper will retry", task_name, args,
                    exc_info=True)
        return False
