"""``GET /metrics`` under gunicorn and Celery: counters aggregate across gunicorn
workers; a worker serves its own metrics when given a port (compose). The money figures
on the production topology are in ``test_production_stack.py``."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector

from gpubill.broker import EmbeddedBroker, free_port
from tests.helpers import wait_for
from tests.stacks import scrape, value

pytestmark = pytest.mark.integration


def _receiver_workers(stack) -> list[int]:  # type: ignore[no-untyped-def]
    master = stack.child("receiver").proc.pid
    return [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def _healthz_count(metrics_dir: Path, pid: int) -> float:
    """The /healthz 200 count in one process's own metrics file."""
    files = [str(f) for f in metrics_dir.glob(f"counter_{pid}.db")]
    for family in MultiProcessCollector.merge(files) if files else []:
        for s in family.samples:
            if s.name == "gpubill_http_requests_total" and s.labels == {
                    "route": "/healthz", "method": "GET", "status": "200"}:
                return s.value
    return 0.0


def test_counters_aggregate_across_gunicorn_workers(stack) -> None:
    metrics_dir = Path(stack.env["GPUBILL_DATA_DIR"]) / "metrics"
    workers = _receiver_workers(stack)
    assert len(workers) >= 2
    start = {pid: _healthz_count(metrics_dir, pid) for pid in workers}
    before = value(scrape(stack.receiver_url), "gpubill_http_requests_total",
                   route="/healthz", method="GET", status="200")
    sent = 0

    def every_worker_served() -> bool:
        nonlocal sent
        for _ in range(10):  # a new connection each: the kernel spreads them over workers
            assert requests.get(f"{stack.receiver_url}/healthz", timeout=5).status_code == 200
            sent += 1
        return all(_healthz_count(metrics_dir, pid) > start[pid] for pid in workers)

    wait_for(every_worker_served, 30, "requests served by every gunicorn worker")
    served = {pid: _healthz_count(metrics_dir, pid) - start[pid] for pid in workers}
    assert sum(served.values()) == sent and max(served.values()) < sent
    after = value(scrape(stack.receiver_url), "gpubill_http_requests_total",
                  route="/healthz", method="GET", status="200")
    assert after - before == sent  # one scrape, answered by one worker, counts them all


def test_a_worker_serves_its_own_metrics_when_given_a_port(db_url, tmp_path) -> None:
    """Compose's shape: a container per worker, each with its own multiprocess directory,
    scraped on GPUBILL_WORKER_METRICS_PORT."""
    broker = EmbeddedBroker(tmp_path / "broker").start()
    port = free_port()
    (tmp_path / "metrics").mkdir()
    env = {**os.environ, "GPUBILL_ENV": "test", "GPUBILL_DATA_DIR": str(tmp_path),
           "GPUBILL_DATABASE_URL": db_url, "GPUBILL_BROKER_URL": broker.url,
           "GPUBILL_WORKER_METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--queues",
                             "maintenance", "--concurrency", "1", "--without-gossip", "--without-mingle"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        def answered():  # type: ignore[no-untyped-def]
            assert proc.poll() is None, "worker exited"
            try:
                return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
            except requests.ConnectionError:
                return None

        r = wait_for(answered, 60, "the worker's metrics endpoint")
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        broker.stop()
