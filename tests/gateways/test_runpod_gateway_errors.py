"""RunPod gateway error classes (issue 11 case 7): the SDK's retry adapter giving up
(``requests.exceptions.RetryError``) is transient, as a timeout or a 5xx is."""
from __future__ import annotations

import requests

from gateways.runpod import RunPodRejected, RunPodTransient, _classify


def test_sdk_retry_error_is_transient() -> None:
    assert isinstance(_classify(requests.exceptions.RetryError("max retries")), RunPodTransient)
    assert isinstance(_classify(requests.Timeout()), RunPodTransient)


def test_credentials_error_is_rejected() -> None:
    assert isinstance(_classify(RuntimeError("401 Unauthorized")), RunPodRejected)
