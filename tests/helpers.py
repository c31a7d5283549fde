"""Test helpers: an HTTP client for the running stack, polling, DB lookups, Prometheus
scrapes as numbers. Nothing here depends on the backend under test (tests/backend_scope.py)."""
from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from base.settings import DEV_METRICS_TOKEN
from emulators.stripe.control import StripeStandIn
from gpubill.demo import Client
from gpubill.launcher import Stack
from ledger.db import transaction
from ledger.models import StripeEvent
from pricing import load_packs

Sample = tuple[str, frozenset[tuple[str, str]]]


def wait_for(probe: Callable[[], Any], timeout_s: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


class Api(Client):
    """The demo's client (the app's and Stripe's view of the receiver, over real HTTP)
    with test conveniences."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack.receiver_url, stack.settings)
        self.stack = stack
        self.secret = self.cfg.stripe_webhook_secret.get_secret_value()

    post_event = Client.stripe_event

    def post_stripe_raw(self, payload: bytes, headers: dict[str, str]) -> requests.Response:
        """POST ``payload`` to the Stripe webhook as it is (any signature headers, or none)."""
        return requests.post(f"{self.base}/webhooks/stripe", data=payload, headers=headers, timeout=10)

    @property
    def stripe(self) -> StripeStandIn:
        """The Stripe stand-in's control surface (pay, refund, dispute … → signed webhooks)."""
        return StripeStandIn(self.cfg.stripe_api_base)

    def topup(self, user_id: str, pack: str = "small") -> dict[str, Any]:
        """Buy ``pack`` the real way: ``POST /v1/topups``, then pay the Checkout Session by
        card on the Stripe stand-in, which sends its signed webhooks to the receiver.
        Returns the ``checkout.session.completed`` event it sent."""
        created = self.create_topup(user_id, pack)
        assert created.status_code == 201, created.text
        paid = self.stripe.pay(created.json()["session_id"])
        assert set(paid["deliveries"]) == {200}, paid["deliveries"]
        return next(e for e in paid["events"] if e["type"] == "checkout.session.completed")

    def funded_user(self, prefix: str = "u", pack: str = "small") -> str:
        """A new user (``{prefix}-{hex}``) whose top-up of ``pack`` has been credited."""
        user = f"{prefix}-{secrets.token_hex(4)}"
        self.topup(user, pack)
        credits = load_packs()[pack].credits
        wait_for(lambda: self.wallet(user)["balance"] == credits, 30, f"the top-up of {user}")
        return user

    def submit(self, user_id: str, job_type: str = "framing", duration_s: float = 30,
               job_input: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
               **params: Any) -> requests.Response:
        return super().submit(user_id, job_type,
                              {"duration_s": duration_s, "resolution": "1080p", **params},
                              job_input or {}, headers)

    def wait_job(self, job_id: str, statuses: tuple[str, ...], timeout_s: float = 40) -> dict[str, Any]:
        return wait_for(lambda: (j := self.job(job_id))["status"] in statuses and j, timeout_s,
                        f"job {job_id} to reach {statuses}")


def db_event(sessions: sessionmaker[Session], event_id: str) -> StripeEvent | None:
    with transaction(sessions) as s:
        return s.get(StripeEvent, event_id)


def scrape(base_url: str, token: str = DEV_METRICS_TOKEN) -> dict[Sample, float]:
    """``GET /metrics`` (bearer ``token``) parsed: {(sample name, labels): value}."""
    r = requests.get(f"{base_url}/metrics", timeout=10, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: dict[Sample, float], name: str, **labels: str) -> float:
    """One sample's value; 0 when absent (a labelled counter not incremented yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
