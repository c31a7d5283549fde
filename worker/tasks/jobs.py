"""Job tasks (queue ``jobs``): place the hold, dispatch to RunPod."""
from __future__ import annotations

import logging

from sqlalchemy.exc import OperationalError

from gpubill import queues
from worker import context, lifecycle
from worker.app import app
from worker.runpod_gateway import RunPodRejected, RunPodTransient
from worker.tasks import MAX_RETRIES, backoff

log = logging.getLogger(__name__)


@app.task(name=queues.PLACE_HOLD, bind=True, max_retries=MAX_RETRIES)
def place_hold(self, job_id: str) -> None:
    """Hold the job's quote; on success enqueue its dispatch (after commit)."""
    try:
        held = lifecycle.place_hold(context.sessions(), job_id)
    except OperationalError as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries))
    if held:
        context.publish(queues.DISPATCH, job_id)


@app.task(name=queues.DISPATCH, bind=True, max_retries=MAX_RETRIES)
def dispatch(self, job_id: str) -> None:
    """Start a held job on RunPod. Transient RunPod errors retry with backoff and
    jitter; a refusal or exhausted retries release the hold and fail the job."""
    try:
        order = lifecycle.dispatch_order(context.sessions(), job_id)
    except OperationalError as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries))
    if order is None:
        return
    gateway = context.runpod()
    try:
        runpod_id = gateway.run(order.endpoint_id, order.job_input,
                                webhook_url=context.webhook_url(order.webhook_token),
                                execution_timeout_ms=order.execution_timeout_ms,
                                ttl_ms=order.ttl_ms)
    except RunPodTransient as exc:
        if self.request.retries >= self.max_retries:
            lifecycle.fail_before_run(context.sessions(), job_id, f"dispatch gave up: {exc}")
            return
        raise self.retry(exc=exc, countdown=backoff(self.request.retries))
    except RunPodRejected as exc:
        lifecycle.fail_before_run(context.sessions(), job_id, f"RunPod refused dispatch: {exc}")
        return
    if not lifecycle.record_dispatch(context.sessions(), job_id, runpod_id):
        # The job moved on while /run was in flight: stop the GPU work nobody pays for.
        log.warning("job %s left 'held' during dispatch; cancelling RunPod job %s", job_id, runpod_id)
        gateway.cancel(order.endpoint_id, runpod_id)
