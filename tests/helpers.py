"""Test helpers: an HTTP client for the running stack, polling, DB lookups."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests
from sqlalchemy.orm import Session, sessionmaker

from emulators.stripe import events as stripe_events
from gpubill.demo import Client
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


class Api(Client):
    """The demo's client (the app's and Stripe's view of the receiver, over real HTTP)
    with test conveniences."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack.receiver_url, stack.settings)
        self.stack = stack
        self.secret = self.cfg.stripe_webhook_secret.get_secret_value()

    post_event = Client.stripe_event

    def topup(self, user_id: str, pack: str = "small") -> dict[str, Any]:
        p = load_packs()[pack]
        event = stripe_events.event("checkout.session.completed", stripe_events.paid_checkout_session(
            user_id=user_id, pack=pack, amount_total=p.price))
        assert self.post_event(event).status_code == 200
        return event

    def submit(self, user_id: str, job_type: str = "framing", duration_s: float = 30,  # type: ignore[override]
               job_input: dict[str, Any] | None = None, **params: Any) -> requests.Response:
        return super().submit(user_id, job_type,
                              {"duration_s": duration_s, "resolution": "1080p", **params},
                              job_input or {})

    def wait_job(self, job_id: str, statuses: tuple[str, ...], timeout_s: float = 40) -> dict[str, Any]:
        return wait_for(lambda: (j := self.job(job_id))["status"] in statuses and j, timeout_s,
                        f"job {job_id} to reach {statuses}")


def db_event(sessions: sessionmaker[Session], event_id: str) -> StripeEvent | None:
    with transaction(sessions) as s:
        return s.get(StripeEvent, event_id)
