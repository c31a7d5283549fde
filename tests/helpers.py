"""Test helpers: an HTTP client for the running stack, polling, DB lookups."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests
from sqlalchemy.orm import Session, sessionmaker

from emulators.stripe import events as stripe_events
from gpubill.launcher import Stack
from ledger.db import transaction
from ledger.models import StripeEvent
from pricing import load_packs


def wait_for(probe: Callable[[], Any], timeout_s: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


class Api:
    """The app's and Stripe's view of the receiver, over real HTTP."""

    def __init__(self, stack: Stack) -> None:
        self.stack, self.base = stack, stack.receiver_url
        cfg = stack.settings
        self.secret = cfg.stripe_webhook_secret.get_secret_value()
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {cfg.api_key_values()[0]}"

    def post_event(self, body: dict[str, Any], **sign: Any) -> requests.Response:
        payload, headers = stripe_events.signed(body, sign.pop("secret", self.secret), **sign)
        return requests.post(f"{self.base}/webhooks/stripe", data=payload, headers=headers, timeout=10)

    def topup(self, user_id: str, pack: str = "small") -> dict[str, Any]:
        p = load_packs()[pack]
        event = stripe_events.event("checkout.session.completed", stripe_events.paid_checkout_session(
            user_id=user_id, pack=pack, amount_total=p.price))
        assert self.post_event(event).status_code == 200
        return event

    def submit(self, user_id: str, job_type: str = "framing", duration_s: float = 30,
               job_input: dict[str, Any] | None = None, **params: Any) -> requests.Response:
        body = {"user_id": user_id, "type": job_type,
                "params": {"duration_s": duration_s, "resolution": "1080p", **params},
                "input": job_input or {}}
        return self.http.post(f"{self.base}/v1/jobs", json=body, timeout=10)

    def job(self, job_id: str) -> dict[str, Any]:
        return self.http.get(f"{self.base}/v1/jobs/{job_id}", timeout=10).json()

    def wallet(self, user_id: str) -> dict[str, Any]:
        return self.http.get(f"{self.base}/v1/wallets/{user_id}", timeout=10).json()

    def wait_job(self, job_id: str, statuses: tuple[str, ...], timeout_s: float = 40) -> dict[str, Any]:
        return wait_for(lambda: (j := self.job(job_id))["status"] in statuses and j, timeout_s,
                        f"job {job_id} to reach {statuses}")


def db_event(sessions: sessionmaker[Session], event_id: str) -> StripeEvent | None:
    with transaction(sessions) as s:
        return s.get(StripeEvent, event_id)
