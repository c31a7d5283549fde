"""``GET /metrics`` under gunicorn and Celery: counters aggregate across gunicorn
workers; a worker serves its own metrics when given a port (compose). The money figures
on the production topology are in ``test_production_stack.py``."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector

from gpubill.broker import EmbeddedBroker, free_port
from tests.helpers import Api, scrape, value, wait_for

pytestmark = pytest.mark.integration


def _receiver_workers(stack) -> list[int]:
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
        def answered():
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


# -- conventions (issue 16) -----------------------------------------------------------
DASHBOARD = Path(__file__).resolve().parents[2] / "gpubill" / "grafana" / "gpubill.json"


def _declared() -> set[str]:
    """Sample names the code declares (this process's registry: the receiver's and the
    workers' metric objects, labelled or not yet observed)."""
    from prometheus_client import REGISTRY

    import gateways.runpod_metrics  # noqa: F401  (registers its metrics)
    import webhook_receiver.metrics  # noqa: F401  (registers its metrics)

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {f.name + s for f in REGISTRY.collect() if f.name.startswith("gpubill_")
            for s in suffixes.get(f.type, ("",))}


def test_grafana_dashboard_uses_only_metric_names_the_service_exports(stack) -> None:
    import json
    import re

    api = Api(stack)
    job = api.submit(api.funded_user(), "framing", 30, {"emulator": {"execution_ms": 100}}).json()["job_id"]
    api.wait_job(job, ("completed",))
    exported = {name for name, _ in scrape(stack.receiver_url)} | _declared()
    panels = json.loads(DASHBOARD.read_text())["panels"]
    used = {name for p in panels for t in p["targets"] for name in re.findall(r"\bgpubill_\w+", t["expr"])}
    assert len(used) >= 10
    assert used - exported == set(), "dashboard expressions name metrics the service does not export"
    assert not [n for n in exported if n.endswith("_seconds") and "duration" not in n
                and n.replace("_seconds", "_seconds_bucket") in exported], "histograms end in _duration_seconds"


def test_no_total_counter_decreases_across_a_run(stack, sessions) -> None:
    """Top-ups, captures, releases, failed jobs and operator adjustments both ways:
    between any two scrapes no ``_total`` sample goes down (an ``adjust`` debit was a
    negative flow before), and the adjust series move by exactly the amounts posted."""
    from ledger.adjustments import adjust
    from ledger.db import transaction
    from tests.helpers import value

    api = Api(stack)
    history = [scrape(stack.receiver_url)]
    user = api.funded_user("mono")
    history.append(scrape(stack.receiver_url))
    for job_input in ({"emulator": {"execution_ms": 100}}, {"emulator": {"fail": "boom"}}):
        job = api.submit(user, "overlay", 30, job_input).json()["job_id"]
        api.wait_job(job, ("completed", "failed"))
        history.append(scrape(stack.receiver_url))
    for amount in (-250, 100, -30):
        with transaction(sessions) as s:
            adjust(s, user_id=user, amount=amount, reason="test", operator="pytest",
                   op_key=f"mono-{user}-{amount}")
        history.append(scrape(stack.receiver_url))
    for before, after in pairwise(history):
        fell = {k: (before[k], after.get(k, 0.0)) for k in before
                if k[0].endswith("_total") and after.get(k, 0.0) < before[k]}
        assert fell == {}, f"counters decreased: {fell}"
    credits = "gpubill_credits_total"
    first, last = history[0], history[-1]
    assert (value(last, credits, flow="adjust", direction="out")
            - value(first, credits, flow="adjust", direction="out")) == 280
    assert (value(last, credits, flow="adjust", direction="in")
            - value(first, credits, flow="adjust", direction="in")) == 100
