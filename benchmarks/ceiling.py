"""The framework's ceiling for the job pipeline: a bare Celery app on the same broker
running, per job, a chain of as many tasks as a gpubill job runs, making as many HTTP
calls (to a trivial local HTTP server) as a gpubill job's tasks make, with no-op bodies.

Each step publishes the next by name after its HTTP calls, as gpubill's tasks do
(``context.publish``); the last HTTP call of the last step goes to ``/done/{job}``,
which the server timestamps. Same reliability settings as ``worker.app`` (JSON,
``acks_late``, prefetch 1, task events on, results ignored), same pool type (prefork)
and concurrency, so the ratio compares gpubill's work per job with the framework's
minimum. HTTP calls go through one pooled ``requests.Session`` per process (the best
case). The worker reads its plan from ``GPUBILL_CEILING_*`` variables.

    worker: celery -A benchmarks.ceiling worker -Q ceiling  (started by ``run_ceiling``)
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import requests
from celery import Celery
from werkzeug.serving import BaseWSGIServer, make_server

QUEUE = "ceiling"
STEP = "ceiling.step"

app = Celery("ceiling", broker=os.environ.get("GPUBILL_CEILING_BROKER", "memory://"),
             set_as_current=False)
app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True,
                task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
                task_default_queue=QUEUE, worker_send_task_events=True, task_send_sent_event=True,
                broker_connection_retry_on_startup=True)


@lru_cache(maxsize=1)
def _http(pid: int) -> requests.Session:
    return requests.Session()


@app.task(name=STEP)
def step(job: str, index: int) -> None:
    """Step ``index`` of ``job``: its HTTP calls (``GPUBILL_CEILING_PLAN``: a JSON list
    of calls per step), then publish step ``index + 1``."""
    plan = json.loads(os.environ["GPUBILL_CEILING_PLAN"])
    base = os.environ["GPUBILL_CEILING_HTTP"]
    last = index == len(plan) - 1
    for call in range(plan[index]):
        path = f"/done/{job}" if last and call == plan[index] - 1 else "/noop"
        _http(os.getpid()).post(base + path, data=b"{}", timeout=10)
    if not last:
        app.send_task(STEP, args=[job, index + 1], queue=QUEUE)


@dataclass
class NoopServer:
    """Threaded HTTP server answering ``{}`` to anything; records when each
    ``/done/{job}`` arrived (``time.time()``)."""

    done: dict[str, float] = field(default_factory=dict)
    calls: int = 0
    server: BaseWSGIServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        environ["wsgi.input"].read(length)
        with self._lock:
            self.calls += 1
            if path.startswith("/done/"):
                self.done[path[6:]] = time.time()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
        return [b"{}"]

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> NoopServer:
        self.server = make_server("127.0.0.1", 0, self, threaded=True)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True, name="noop-http").start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()


@dataclass
class CeilingResult:
    jobs: int
    done: int
    jobs_per_s: float
    http_calls: int
    worker_cpu_ms: float


def run_ceiling(broker_url: str, plan: list[int], jobs: int, concurrency: int, log: Path,
                timeout_s: float = 180) -> CeilingResult:
    """Start a bare worker (prefork, ``concurrency``), publish ``jobs`` chains, wait
    for every ``/done``; jobs/s is jobs done / (last ``/done`` − first publish), the
    same measure as the pipeline's."""
    from benchmarks.procstat import CpuMeter, wait_until

    with NoopServer() as http, log.open("ab") as out:
        env = {**os.environ, "GPUBILL_CEILING_BROKER": broker_url, "GPUBILL_CEILING_HTTP": http.url,
               "GPUBILL_CEILING_PLAN": json.dumps(plan)}
        hostname = f"ceiling-{os.getpid()}@localhost"
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "benchmarks.ceiling", "worker", "-Q", QUEUE,
             "--concurrency", str(concurrency), "--hostname", hostname, "--events",
             "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        producer = Celery("ceiling-producer", broker=broker_url, set_as_current=False)
        producer.conf.update(task_serializer="json", task_send_sent_event=True)
        try:
            if not wait_until(lambda: producer.control.ping(destination=[hostname], timeout=0.5), 60, 0.2):
                raise RuntimeError(f"ceiling worker did not start; see {log}")
            cpu = CpuMeter({"ceiling": worker.pid}).start()
            first = time.time()
            for i in range(jobs):
                producer.send_task(STEP, args=[f"c{i}", 0], queue=QUEUE)
            wait_until(lambda: len(http.done) >= jobs, timeout_s, 0.05)
            used = cpu.stop()["ceiling"]
        finally:
            producer.close()
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, 9)
                worker.wait()
        done = sorted(http.done.values())
        rate = len(done) / (done[-1] - first) if done and done[-1] > first else float("nan")
        return CeilingResult(jobs, len(done), rate, http.calls, used)
