"""``gpubill jobs show|retry-settlement``: a job's receipt; settle a stuck job again."""
from __future__ import annotations

import json
from typing import Any

import click

from base.settings import get_settings
from gpubill.commands import Group, fail, ledger_sessions


def _receipt(job_id: str) -> dict[str, Any]:
    from ledger.db import transaction
    from ledger.jobs import receipt
    from ledger.models import Job

    with transaction(ledger_sessions()) as s:
        job = s.get(Job, job_id)
        if job is None:
            fail(f"no job {job_id}")
        return {**receipt(job), "hold_open": _open_hold(s, job)}


def _open_hold(s: Any, job: Any) -> int | None:
    from ledger.models import Hold, HoldStatus

    hold = s.get(Hold, job.hold_id) if job.hold_id is not None else None
    return hold.id if hold is not None and hold.status == HoldStatus.OPEN else None


def _print(body: dict[str, Any], prefix: str = "") -> None:
    for name, value in body.items():
        if isinstance(value, dict) and name != "params":
            _print(value, f"{prefix}{name}.")
        else:
            shown = "-" if value is None else (json.dumps(value) if isinstance(value, (dict, list)) else value)
            click.echo(f"{prefix + name:<28}{shown}")


@click.group(cls=Group)
def jobs() -> None:
    """GPU jobs: receipts, stuck settlements."""


@jobs.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="The receipt as JSON (GET /v1/jobs/{id}).")
def show(job_id: str, as_json: bool) -> None:
    """JOB_ID's receipt: quote, hold, RunPod timings (ms), charge and release (credits),
    RunPod cost and margin (USD)."""
    body = _receipt(job_id)
    if as_json:
        click.echo(json.dumps(body, indent=2))
    else:
        _print(body)


@jobs.command("retry-settlement")
@click.argument("job_id")
@click.option("--enqueue", is_flag=True,
              help="Publish gpu_status.refresh for a worker instead of settling here.")
def retry_settlement(job_id: str, enqueue: bool) -> None:
    """Settle a job RunPod is (or was) running: re-fetch RunPod /status and apply it
    through the worker's own settlement path (capture on COMPLETED, release on failure).
    The job's operation keys make it at most once: a settled job is left as it is."""
    from ledger.db import transaction
    from ledger.models import Job, JobStatus

    factory = ledger_sessions()
    with transaction(factory) as s:
        job = s.get(Job, job_id)
        if job is None:
            fail(f"no job {job_id}")
        status, open_hold = job.status, _open_hold(s, job)
    if status in JobStatus.TERMINAL:
        if open_hold is not None:
            fail(f"job {job_id} is {status} but hold {open_hold} is still open; "
                  "run `gpubill reconcile` and fix it by hand")
        click.echo(f"already settled: {job_id} is {status}; nothing to do")
        _print_settlement(job_id)
        return
    if status not in JobStatus.RUNNING:
        fail(f"job {job_id} is {status}: not dispatched to RunPod, nothing to settle "
              "(the outbox sweeper dispatches held jobs)")
    if enqueue:
        _publish(job_id)
        return
    after = _settle_here(job_id)
    if after in JobStatus.RUNNING:
        click.echo(f"{job_id} is still running on RunPod ({after}); nothing to settle yet")
    _print_settlement(job_id)


def _publish(job_id: str) -> None:
    """Enqueue ``gpu_status.refresh(job_id)`` directly: nothing is committed here, so
    there is no commit to publish after (``base.after_commit`` is for publishes a
    transaction makes due)."""
    from base import queues

    cfg = get_settings()
    if not cfg.broker_url:
        fail(f"GPUBILL_BROKER_URL is not set and no running `gpubill up` in {cfg.data_dir}")
    producer = queues.producer(cfg.broker_url)
    try:
        published = queues.enqueue(producer, queues.REFRESH_STATUS, job_id)
    finally:
        producer.close()
    if not published:
        fail("broker unreachable; nothing published")
    click.echo(f"enqueued {queues.REFRESH_STATUS}({job_id})")


def _settle_here(job_id: str) -> str | None:
    """The refresh task's service (``services.settlement.settle_from_runpod``), in this
    process; None when the job was settled meanwhile (a worker got there first)."""
    from gateways.runpod import RunPodGateway, RunPodRejected, RunPodTransient
    from services import settlement

    cfg = get_settings()
    gateway = RunPodGateway(cfg.runpod_base_url, cfg.runpod_api_key.get_secret_value(), cfg.runpod_timeout_s)
    try:
        return settlement.settle_from_runpod(ledger_sessions(), job_id, gateway)
    except (RunPodTransient, RunPodRejected) as err:
        fail(f"RunPod status of {job_id} failed, nothing changed: {err}")
    return None


def _print_settlement(job_id: str) -> None:
    body = _receipt(job_id)
    click.echo(f"status {body['status']}  charge {body['charge']}  released {body['released']}  "
               f"execution_ms {body['runpod']['execution_ms']}")
