"""The runpod SDK is loaded only by processes that call RunPod (docs/runpod-boundary.md,
"Memory"): importing the gateway module, the worker's tasks or the receiver must not
import ``runpod``; building a gateway does."""
from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import sys
import gateways.runpod, worker.tasks.maintenance, worker.tasks.notify, webhook_receiver.app
print('runpod' in sys.modules)
from gateways.runpod import RunPodGateway
RunPodGateway('http://127.0.0.1:1/v2', 'key')
print('runpod' in sys.modules)
"""


def test_the_sdk_is_imported_by_a_gateway_not_by_importing_modules() -> None:
    env = {**os.environ, "GPUBILL_BROKER_URL": "redis://127.0.0.1:1/0"}  # never connected to
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["False", "True"]
