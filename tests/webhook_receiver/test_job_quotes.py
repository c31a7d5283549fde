"""``POST /v1/quotes``: the price preview the app shows before export."""
from __future__ import annotations

from decimal import Decimal

import pytest
import requests

from pricing import JobParams, quote

pytestmark = pytest.mark.integration



def test_quote_matches_the_rate_card(api) -> None:
    answer = api.http.post(f"{api.base}/v1/quotes", timeout=10, json={
        "type": "upscale", "params": {"duration_s": 30, "resolution": "1080p", "scale": 4}})
    assert answer.status_code == 200, answer.text
    q = quote("upscale", JobParams(duration_s=Decimal(30), resolution="1080p", scale=4))
    assert answer.json() == {
        "type": "upscale", "estimated_gpu_seconds": "60.000", "hold": q.hold_credits,
        "max_gpu_seconds": q.max_gpu_seconds, "price_per_gpu_second": "0.5",
        "min_charge": q.min_charge, "ratecard_version": q.ratecard_version}
    assert q.hold_credits == 45 and q.max_gpu_seconds == 90  # 60 GPU-s × 1.5 × 0.5


@pytest.mark.parametrize("payload, field", [
    ({"type": "upscale", "params": {"duration_s": 30}}, "params.scale"),
    ({"type": "framing", "params": {"duration_s": 30, "resolution": "8k"}}, "params.resolution"),
    ({"type": "karaoke", "params": {"duration_s": 30}}, "type"),
    ({"type": "framing", "params": {"duration_s": -1}}, "params.duration_s"),
])
def test_unpriceable_request_is_422(api, payload, field) -> None:
    answer = api.http.post(f"{api.base}/v1/quotes", json=payload, timeout=10)
    assert answer.status_code == 422
    assert field in [f["field"] for f in answer.json()["error"]["fields"]]


def test_quote_needs_an_api_key(api) -> None:
    answer = requests.post(f"{api.base}/v1/quotes", timeout=10,
                           json={"type": "framing", "params": {"duration_s": 30}})
    assert answer.status_code == 401
