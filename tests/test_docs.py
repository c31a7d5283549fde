"""``GET /docs`` (issue 16): Swagger UI over the same /openapi.json, served whole from
the receiver (no CDN): the page loads, every asset it references answers 200, the
bundle is Swagger UI 5 (renders OpenAPI 3.1), and it points at the served spec."""
from __future__ import annotations

import re

import pytest
import requests

pytestmark = pytest.mark.integration


def test_docs_page_and_its_assets_are_served(stack) -> None:
    page = requests.get(f"{stack.receiver_url}/docs", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert 'url: "/openapi.json"' in page.text and "SwaggerUIBundle(" in page.text
    assets = re.findall(r'(?:src|href)="(/docs/static/[^"]+)"', page.text)
    assert len(assets) >= 3
    for path in assets:
        r = requests.get(f"{stack.receiver_url}{path}", timeout=10)
        assert r.status_code == 200 and len(r.content) > 1000, path
    bundle = requests.get(f"{stack.receiver_url}/docs/static/swagger-ui-bundle.js", timeout=10).text
    assert re.search(r'"5\.\d+\.\d+"', bundle), "Swagger UI 5.x (OpenAPI 3.1)"
    spec = requests.get(f"{stack.receiver_url}/openapi.json", timeout=10).json()
    assert "/docs" in spec["paths"] and spec["openapi"].startswith("3.1")
    missing = requests.get(f"{stack.receiver_url}/docs/static/..%2fcore.py", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_metrics_needs_its_token(stack) -> None:
    """/metrics carries revenue totals: 401 JSON without the metrics token, and the
    app's API key is not it."""
    url = f"{stack.receiver_url}/metrics"
    assert requests.get(url, timeout=10).status_code == 401
    api_key = stack.settings.api_key_values()[0]
    r = requests.get(url, timeout=10, headers={"Authorization": f"Bearer {api_key}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    token = stack.settings.metrics_token.get_secret_value()
    ok = requests.get(url, timeout=10, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and "gpubill_credits_total" in ok.text
