"""Is a child of the ``Stack`` ready? One probe per service, each bounded by a 1 s HTTP
timeout (0.5 s for a worker's Celery ping); an exception means "not yet"."""
from __future__ import annotations

import requests

from base import queues
from base.settings import Settings


def probe(name: str, cfg: Settings, argv: list[str]) -> bool:
    """True once service ``name`` (started with ``argv``) answers: the receiver's and the
    Stripe stand-in's ``/healthz``, the RunPod stand-in's ``/health``, a worker's Celery
    ping, Flower's ``/healthcheck``; anything else is ready at once."""
    if name == "receiver":
        return requests.get(f"http://127.0.0.1:{cfg.receiver_port}/healthz", timeout=1).ok
    if name == "runpod-emulator":
        return requests.get(f"{cfg.runpod_base_url}/probe/health", timeout=1, headers={
            "Authorization": f"Bearer {cfg.runpod_api_key.get_secret_value()}"}).ok
    if name == "stripe-emulator":
        return requests.get(f"{cfg.stripe_api_base}/healthz", timeout=1).ok
    if name.startswith("worker"):
        return worker_ready(cfg, argv)
    if name == "flower":
        return requests.get(f"http://127.0.0.1:{cfg.flower_port}/healthcheck", timeout=1).ok
    return True


def worker_ready(cfg: Settings, argv: list[str]) -> bool:
    """The Celery worker whose ``--hostname`` is in ``argv`` answers a ping."""
    hostname = argv[argv.index("--hostname") + 1]
    app = queues.producer(cfg.broker_url)
    try:
        return bool(app.control.ping(destination=[hostname], timeout=0.5))
    finally:
        app.close()
