"""The RunPod gateway without the runpod SDK (docs/performance.md): worker processes
no longer import it, and the gateway's REST client behaves as the SDK's ``RunPodClient``
did (docs/runpod-boundary.md section 7) — JSON + Bearer, 401 rejected, 404 "gone",
5xx transient, ``GET`` retried on 429 by the session's adapter, ``POST /run`` never
re-sent by it (no hidden duplicate GPU job)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from worker.runpod_gateway import RunPodGateway, RunPodRejected, RunPodTransient


def test_worker_and_task_modules_do_not_load_the_runpod_sdk() -> None:
    code = ("import sys, worker.app\n"
            "for m in worker.app.app.conf.include: __import__(m)\n"
            "print(sorted(k for k in sys.modules if k == 'runpod' or k.startswith('runpod.')))")
    env = {**os.environ, "GPUBILL_BROKER_URL": "redis://127.0.0.1:6379/0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


class Scripted:
    """A local RunPod: answers each request with the next (status, body) of ``script``
    (then 200 ``{}``); records (method, path, headers, json body)."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, Any]]] = []
        self.seen: list[tuple[str, str, dict[str, str], Any]] = []

    def __call__(self, environ: Any, start_response: Any) -> Any:
        req = Request(environ)
        body = json.loads(req.get_data() or b"null")
        self.seen.append((req.method, req.path, dict(req.headers), body))
        status, answer = self.script.pop(0) if self.script else (200, {})
        return Response(json.dumps(answer), status, content_type="application/json")(environ, start_response)


@pytest.fixture
def runpod() -> Iterator[tuple[Scripted, RunPodGateway]]:
    app = Scripted()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield app, RunPodGateway(f"http://127.0.0.1:{server.server_port}/v2/", "rp_key", timeout_s=5)
    finally:
        server.shutdown()
        server.server_close()


def test_run_posts_the_documented_request_with_bearer_key(runpod) -> None:
    app, gateway = runpod
    app.script = [(200, {"id": "rp-1", "status": "IN_QUEUE"})]
    assert gateway.run("ep", {"x": 1}, webhook_url="https://h/w", execution_timeout_ms=5000,
                       ttl_ms=9000) == "rp-1"
    [(method, path, headers, body)] = app.seen
    assert (method, path) == ("POST", "/v2/ep/run")
    assert headers["Authorization"] == "Bearer rp_key"
    assert headers["Content-Type"] == "application/json"
    assert body == {"input": {"x": 1}, "webhook": "https://h/w",
                    "policy": {"executionTimeout": 5000, "ttl": 9000}}


def test_status_body_404_gone_401_rejected_5xx_transient(runpod) -> None:
    app, gateway = runpod
    app.script = [(200, {"status": "COMPLETED", "executionTime": 7}), (404, {}), (401, {}), (503, {})]
    assert gateway.status("ep", "rp-1") == {"status": "COMPLETED", "executionTime": 7}
    assert gateway.status("ep", "rp-1") is None
    with pytest.raises(RunPodRejected):
        gateway.status("ep", "rp-1")
    with pytest.raises(RunPodTransient):
        gateway.status("ep", "rp-1")
    assert [(m, p) for m, p, _, _ in app.seen] == [("GET", "/v2/ep/status/rp-1")] * 4


def test_status_429_is_retried_by_the_session_but_run_429_is_not_resent(runpod) -> None:
    app, gateway = runpod
    app.script = [(429, {}), (200, {"status": "IN_PROGRESS"})]
    assert gateway.status("ep", "rp-1") == {"status": "IN_PROGRESS"}
    assert len(app.seen) == 2
    app.seen.clear()
    app.script = [(429, {}), (200, {"id": "rp-2"})]
    with pytest.raises(RunPodTransient):
        gateway.run("ep", {}, webhook_url="https://h/w", execution_timeout_ms=1, ttl_ms=1)
    assert [(m, p) for m, p, _, _ in app.seen] == [("POST", "/v2/ep/run")]
