"""RunPod serverless behind one small gateway: plain ``requests`` against RunPod's
documented REST paths (``/run``, ``/status/{id}``, ``/cancel/{id}``, RunPod docs "Send
API requests"), with the same session setup as the runpod SDK's ``RunPodClient``.

Why not the SDK's client any more: ``import runpod`` loads the whole SDK (452 modules:
its serverless worker, CLI, paramiko, aiohttp, cryptography …) into every worker and
beat process for two 20-line methods — about 34 MiB of RSS and seconds of start-up per
process (docs/performance.md) — and ``RunPodClient`` is not in the SDK's ``__all__``
(docs/runpod-boundary.md section 7 named this alternative). ``_RestClient`` keeps its
behaviour exactly (runpod-python 1.12.0, ``runpod/endpoint/runner.py``,
``RunPodClient.__init__`` and ``_request``): one pooled ``requests.Session``, urllib3
``Retry(total=5, backoff_factor=1, status_forcelist=[408, 429])`` mounted on
``http://`` only, JSON + Bearer headers, 401 → ``RuntimeError``, other errors →
``raise_for_status``.

The base URL is configuration: RunPod's ``https://api.runpod.ai/v2`` in production, the
local stand-in (``emulators.runpod``) in the demo and tests. Errors are classified for
the task layer: ``RunPodTransient`` (429, 5xx, 408, network) is retried with backoff;
``RunPodRejected`` (other 4xx, bad credentials) never will succeed.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter, Retry

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
    # RetryError: the session's urllib3 retry adapter gave up (e.g. repeated 408/429).
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError)):
        return RunPodTransient(f"RunPod unreachable: {exc.__class__.__name__}")
    if isinstance(exc, RuntimeError):  # _RestClient's answer to 401
        return RunPodRejected(str(exc))
    return exc


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


class _RestClient:
    """``POST``/``GET`` ``{base_url}/{path}`` → the JSON body (what the SDK's
    ``RunPodClient`` does; see the module docstring). Raises ``RuntimeError`` on 401,
    ``requests.HTTPError`` on another error status, ``requests.RequestException``
    (``RetryError``, ``ConnectionError``, ``Timeout``) when no answer came."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(max_retries=Retry(
            total=5, backoff_factor=1, status_forcelist=[408, 429])))
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}

    def _request(self, method: str, path: str, data: dict[str, Any] | None, timeout: float) -> Any:
        answer = self.session.request(method, f"{self.base_url}/{path}", headers=self.headers,
                                      json=data, timeout=timeout)
        if answer.status_code == 401:
            raise RuntimeError("401 Unauthorized | Make sure Runpod API key is set and valid.")
        answer.raise_for_status()
        return answer.json()

    def post(self, path: str, data: dict[str, Any] | None, timeout: float = 10) -> Any:
        return self._request("POST", path, data, timeout)

    def get(self, path: str, timeout: float = 10) -> Any:
        return self._request("GET", path, None, timeout)


class RunPodGateway:
    """Dispatch, status and cancel of serverless jobs.

    ``base_url`` is the ``/v2`` root (e.g. ``http://127.0.0.1:8010/v2``); ``api_key`` is
    sent as ``Authorization: Bearer``; ``timeout_s`` bounds each call (seconds) — a call
    that outlives it is ``RunPodTransient``.
    """

    def __init__(self, base_url: str, api_key: str, timeout_s: float = 10.0) -> None:
        self._client = runpod_metrics.Timed(_RestClient(base_url, api_key))  # latency/errors
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
            # As the SDK's Endpoint.run posts it, but with our timeout.
            return str(self._client.post(f"{endpoint_id}/run", request, timeout=self._timeout)["id"])
        except Exception as exc:
            raise _classify(exc) from exc

    def status(self, endpoint_id: str, runpod_job_id: str) -> dict[str, Any] | None:
        """``GET /v2/{endpoint_id}/status/{id}``: the status body, or None on 404.

        RunPod answers 404 once it has forgotten a job (30 min after completion, or
        past its ttl). Body fields used: ``status``, ``executionTime`` and ``delayTime``
        (milliseconds), ``output``, ``error``. Raises ``RunPodTransient``, ``RunPodRejected``.
        """
        return _unless_gone(lambda: self._client.get(f"{endpoint_id}/status/{runpod_job_id}",
                                                     timeout=self._timeout))

    def cancel(self, endpoint_id: str, runpod_job_id: str) -> dict[str, Any] | None:
        """``POST /v2/{endpoint_id}/cancel/{id}``; None if RunPod no longer knows it."""
        return _unless_gone(lambda: self._client.post(f"{endpoint_id}/cancel/{runpod_job_id}",
                                                      data=None, timeout=self._timeout))
