"""`gpubill up` as an operator runs it supervises its children: a worker killed with
SIGKILL is started again and connects to the broker, and Ctrl-C stops everything,
leaving no process behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from gpubill.broker import free_port
from tests.e2e.test_demo_command import processes_of
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e


def _workers(up_pid: int) -> list[int]:
    """The Celery worker main processes among ``gpubill up``'s children."""
    found = []
    for pid in subprocess.run(["pgrep", "-P", str(up_pid)], capture_output=True, text=True).stdout.split():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"celery" in cmdline and b"worker" in cmdline:
            found.append(int(pid))
    return found


def _ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).ok
    except requests.RequestException:  # not listening yet, or still starting
        return False


def test_up_starts_a_killed_worker_again_and_stops_clean(tmp_path) -> None:
    data_dir = (tmp_path / "up").resolve()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUBILL_")}
    env.update({"GPUBILL_DATA_DIR": str(data_dir), "GPUBILL_RECEIVER_PORT": str(port),
                "GPUBILL_EMULATOR_PORT": str(free_port()), "GPUBILL_STRIPE_EMULATOR_PORT": str(free_port()),
                "GPUBILL_BROKER_PORT": str(free_port())})  # never the default 6380 another stack may hold
    up = subprocess.Popen([sys.executable, "-m", "gpubill.cli", "up", "--workers", "single", "--no-flower"],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        printed: list[str] = []
        threading.Thread(target=lambda: printed.extend(iter(up.stdout.readline, "")), daemon=True).start()
        # up prints its addresses once every child is ready
        wait_for(lambda: up.poll() is None and any(ln.startswith("logs") for ln in printed), 120, "gpubill up started")
        wait_for(lambda: _ready(port), 30, "the receiver ready")
        first = _workers(up.pid)
        assert len(first) == 1
        os.killpg(first[0], signal.SIGKILL)
        wait_for(lambda: [p for p in _workers(up.pid) if p not in first], 60, "the worker started again")
        log = data_dir / "logs" / "worker.log"
        # Celery logs "celery@… ready." once connected to the broker and consuming
        wait_for(lambda: log.read_text(errors="replace").count(" ready.") >= 2, 60, "the new worker ready")
        assert up.poll() is None  # up itself carried on
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=90)
    err = up.stderr.read()
    assert up.returncode == 0, err
    assert "worker exited; started again" in err
    wait_for(lambda: processes_of(data_dir) == [], 10, "every process of the stack gone")
