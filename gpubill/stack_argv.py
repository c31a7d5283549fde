"""The command line (and extra environment) of each child the ``Stack`` starts; ``py`` is
the interpreter (``sys.executable``), ``cfg`` the stack's settings."""
from __future__ import annotations

import socket
from pathlib import Path

from base import queues
from base.settings import Settings

EMULATOR_PROFILES = Path(__file__).resolve().parent.parent / "emulators" / "runpod" / "profiles.toml"


def runpod_emulator_argv(py: str, cfg: Settings) -> list[str]:
    """The RunPod stand-in on ``cfg.emulator_port`` with the bundled endpoint profiles."""
    return [py, "-m", "gpubill.cli", "emulate", "runpod", "--port", str(cfg.emulator_port),
            "--config", str(EMULATOR_PROFILES)]


def stripe_emulator_argv(py: str, cfg: Settings, receiver_url: str) -> list[str]:
    """The Stripe stand-in on ``cfg.stripe_emulator_port``, delivering to the receiver."""
    return [py, "-m", "gpubill.cli", "emulate", "stripe", "--port", str(cfg.stripe_emulator_port),
            "--webhook-url", f"{receiver_url}/webhooks/stripe"]


def receiver_argv(py: str) -> list[str]:
    """The receiver under gunicorn (``gpubill.gunicorn_conf``)."""
    return [py, "-m", "gunicorn", "-c", "python:gpubill.gunicorn_conf"]


def worker_groups(workers: str) -> dict[str, tuple[str, ...]]:
    """Worker name → its queues: ``"single"`` one worker on every queue, else one per queue."""
    if workers == "single":
        return {"worker": tuple(queues.QUEUES)}
    return {f"worker-{q}": (q,) for q in queues.QUEUES}


# Seconds between a worker's ``worker-heartbeat`` events (Celery's default: 2). Flower is
# their only reader and counts a worker offline after two missed intervals (Celery's
# expire window); readiness and health checks ping instead. Every 10 s cut the idle
# per-queue stack from 1.43–1.50 to 1.05–1.10 % of one core (docs/performance.md).
EVENT_HEARTBEAT_S = 10


def worker_argv(py: str, cfg: Settings, name: str, qs: tuple[str, ...], concurrency: int) -> list[str]:
    """A Celery worker consuming ``qs`` with ``concurrency`` processes; its hostname
    (``{name}-{receiver_port}@{host}``) is what the readiness ping targets; it imports the
    task modules of ``qs`` only (``worker.queue_tasks``)."""
    return [py, "-m", "celery", "-A", "worker.app", "worker", "--queues", ",".join(qs),
            "--concurrency", str(concurrency),
            "--hostname", f"{name}-{cfg.receiver_port}@{socket.gethostname()}",
            "--events", "--heartbeat-interval", str(EVENT_HEARTBEAT_S),
            "--without-gossip", "--without-mingle", "--loglevel", cfg.log_level]


def beat_argv(py: str, cfg: Settings) -> list[str]:
    """The single Celery beat; ``worker.app`` imports no task code (it sends by name)."""
    return [py, "-m", "celery", "-A", "worker.app", "beat", "--loglevel", cfg.log_level]


def flower_argv(py: str, cfg: Settings) -> list[str]:
    """Flower, read-only (no worker control, no task revoke/terminate, per Flower's
    ``--read_only``), bound to the receiver's host. Queue lengths come from the broker
    itself when it is Redis (Flower's ``--broker_api`` is only needed for RabbitMQ).
    Started through ``gpubill.flower_guard``: its ``/metrics`` behind the same login."""
    return [py, "-m", "gpubill.flower_guard", "-A", "worker.app", "flower", "--read_only",
            f"--address={cfg.receiver_host}", f"--port={cfg.flower_port}",
            "--purge_offline_workers=60"]


def flower_env(cfg: Settings) -> dict[str, str]:
    """Flower reads ``FLOWER_*`` variables; the basic-auth secret travels this way so it
    never shows in a process list."""
    return {"FLOWER_BASIC_AUTH": cfg.flower_basic_auth.get_secret_value()}
