"""RunPod serverless behind one small gateway, with the official ``runpod`` SDK inside.

The base URL is configuration: RunPod's ``https://api.runpod.ai/v2`` in production, the
local stand-in (``emulators.runpod``) in the demo and tests. Errors are classified for
the task layer: ``RunPodTransient`` (429, 5xx, 408, network) is retried with backoff;
``RunPodRejected`` (other 4xx, bad credentials) never will succeed.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests

from gateways import runpod_metrics


class RunPodTransient(Exception):
    """A RunPod call that may succeed if retried (rate limit, server error, network)."""


class RunPodRejected(Exception):
    """A RunPod call that will never succeed as sent (4xx other than 408/429, 401)."""


def _classify(exc: Exception) -> Exception:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        if code in (408, 429) or code >= 500:
            return RunPodTransient(f"RunPod answered {code}")
        return RunPodRejected(f"RunPod answered {code}: {exc.response.text[:200]}")
    # RetryError: the SDK's own urllib3 retry adapter gave up (e.g. repeated 5xx/429).
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError)):
        return RunPodTransient(f"RunPod unreachable: {exc.__class__.__name__}")
    if isinstance(exc, RuntimeError):  # the SDK's answer to 401 / a missing key
        return RunPodRejected(str(exc))
    return exc


def _segment(runpod_job_id: str) -> str:
    """``runpod_job_id`` as one URL path segment (``/`` and ``.`` escaped): an id from a
    callback body must never turn ``/cancel/{id}`` into another job's URL (the HTTP
    client removes ``..`` segments)."""
    return quote(runpod_job_id, safe="").replace(".", "%2E")


def _unless_gone(call: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """The call's JSON body, or None when RunPod answers 404 (it forgot the job)."""
    try:
        return call()
    except requests.HTTPError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            return None
        raise _classify(exc) from exc
    except Exception as exc:
        raise _classify(exc) from exc


class RunPodGateway:
    """Dispatch, status and cancel of serverless jobs.

    ``base_url`` is the ``/v2`` root (e.g. ``http://127.0.0.1:8010/v2``); ``api_key`` is
    sent as ``Authorization: Bearer``; ``timeout_s`` bounds each call (seconds) — a call
    that outlives it is ``RunPodTransient``.
    """

    def __init__(self, base_url: str, api_key: str, timeout_s: float = 10.0) -> None:
        # The SDK is imported here, not at module level: importing ``runpod`` loads ~450
        # modules (~34 MiB per process, docs/performance.md), which only the processes
        # that call RunPod need (the jobs and gpu_status workers, the CLI), not beat, the
        # notify or maintenance workers, or the receiver.
        import runpod
        from runpod.endpoint.runner import RunPodClient

        # The SDK reads this module global whenever it builds a client.
        runpod.endpoint_url_base = base_url.rstrip("/")
        self._client = runpod_metrics.Timed(RunPodClient(api_key=api_key))  # latency/errors
        self._timeout = timeout_s

    def run(self, endpoint_id: str, job_input: dict[str, Any], *, webhook_url: str,
            execution_timeout_ms: int, ttl_ms: int) -> str:
        """``POST /v2/{endpoint_id}/run``; returns RunPod's job id.

        ``policy.executionTimeout`` (ms) caps the GPU time RunPod runs — the funded
        GPU-seconds; ``policy.ttl`` (ms) bounds queue + run lifetime (RunPod docs,
        "Send API requests" → execution policies). Raises ``RunPodTransient``,
        ``RunPodRejected``.
        """
        request = {
            "input": job_input,
            "webhook": webhook_url,
            "policy": {"executionTimeout": execution_timeout_ms, "ttl": ttl_ms},
        }
        try:
            # The SDK's RunPodClient.post, as Endpoint.run uses it, but with our timeout.
            return str(self._client.post(f"{endpoint_id}/run", request, timeout=self._timeout)["id"])
        except Exception as exc:
            raise _classify(exc) from exc

    def status(self, endpoint_id: str, runpod_job_id: str) -> dict[str, Any] | None:
        """``GET /v2/{endpoint_id}/status/{id}``: the status body, or None on 404.

        RunPod answers 404 once it has forgotten a job (30 min after completion, or
        past its ttl). Body fields used: ``status``, ``executionTime`` and ``delayTime``
        (milliseconds), ``output``, ``error``. Raises ``RunPodTransient``, ``RunPodRejected``.
        """
        return _unless_gone(lambda: self._client.get(f"{endpoint_id}/status/{_segment(runpod_job_id)}",
                                                     timeout=self._timeout))

    def cancel(self, endpoint_id: str, runpod_job_id: str) -> dict[str, Any] | None:
        """``POST /v2/{endpoint_id}/cancel/{id}``; None if RunPod no longer knows it."""
        return _unless_gone(lambda: self._client.post(f"{endpoint_id}/cancel/{_segment(runpod_job_id)}",
                                                      data=None, timeout=self._timeout))
