"""The demo scenario (issue #2), run over HTTP against a running stack.

User A buys the ``medium`` pack: ``POST /v1/topups`` creates a Checkout Session on the
Stripe stand-in, the stand-in pays it by card and sends its signed webhooks (each twice),
the worker credits the pack once; then A exports one job of each type for a 30 s clip — the stand-in fails
the ``track`` job; user B has no credits and is refused. Every expectation is checked
against the API and the ledger invariants against the database.
"""
from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from base.settings import Settings
from emulators.stripe import events as stripe_events
from emulators.stripe.control import StripeStandIn
from gpubill.client import ApiError, GpubillClient
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.invariants import check
from ledger.models import JobStatus
from pricing import load_packs

Echo = Callable[[str], None]
PACK = "medium"
JOBS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("framing", {"duration_s": 30, "resolution": "1080p"}, {"clip": "s3://clips/match-1.mp4"}),
    ("overlay", {"duration_s": 30, "resolution": "1080p"}, {"clip": "s3://clips/match-1.mp4"}),
    ("upscale", {"duration_s": 30, "resolution": "1080p", "scale": 4}, {"clip": "s3://clips/match-1.mp4"}),
    ("track", {"duration_s": 30, "resolution": "1080p"},
     {"clip": "s3://clips/match-1.mp4", "emulator": {"fail": "tracker lost the ball at frame 212"}}),
]


@dataclass
class Outcome:
    ok: bool = True
    failures: list[str] = field(default_factory=list)

    def expect(self, cond: bool, what: str) -> None:
        if not cond:
            self.ok = False
            self.failures.append(what)


class Client:
    """The app's side of the /v1 API and Stripe's side of the webhook."""

    def __init__(self, base_url: str, cfg: Settings) -> None:
        self.base, self.cfg = base_url, cfg
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {cfg.api_key_values()[0]}"

    def stripe_event(self, body: dict[str, Any], secret: str | None = None,
                     timestamp: int | None = None) -> requests.Response:
        """POST ``body`` signed as Stripe does (by default with the configured secret)."""
        secret = secret or self.cfg.stripe_webhook_secret.get_secret_value()
        payload, headers = stripe_events.signed(body, secret, timestamp)
        return requests.post(f"{self.base}/webhooks/stripe", data=payload, headers=headers, timeout=10)

    def packs(self) -> list[dict[str, Any]]:
        return self.http.get(f"{self.base}/v1/packs", timeout=10).json()["packs"]

    def create_topup(self, user_id: str, pack: str, **headers: str) -> requests.Response:
        """``POST /v1/topups``: a Checkout Session for ``pack`` (201 with ``session_id``)."""
        return self.http.post(f"{self.base}/v1/topups", json={"user_id": user_id, "pack": pack},
                              headers=headers, timeout=30)

    def entries(self, user_id: str, **params: Any) -> dict[str, Any]:
        return self.http.get(f"{self.base}/v1/wallets/{user_id}/entries", params=params, timeout=10).json()

    def submit(self, user_id: str, job_type: str, params: dict[str, Any],
               job_input: dict[str, Any], headers: dict[str, str] | None = None) -> requests.Response:
        return self.http.post(f"{self.base}/v1/jobs", timeout=10, headers=headers, json={
            "user_id": user_id, "type": job_type, "params": params, "input": job_input})

    def job(self, job_id: str) -> dict[str, Any]:
        return self.http.get(f"{self.base}/v1/jobs/{job_id}", timeout=10).json()

    def wallet(self, user_id: str) -> dict[str, Any]:
        return self.http.get(f"{self.base}/v1/wallets/{user_id}", timeout=10).json()

    def wait(self, probe: Callable[[], Any], timeout_s: float = 60) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = probe()
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.2)


def run_scenario(base_url: str, cfg: Settings, echo: Echo = print) -> Outcome:
    """Drive the scenario against the receiver at ``base_url``; returns what failed."""
    out, api = Outcome(), Client(base_url, cfg)
    run = secrets.token_hex(3)
    alice, bob = f"alice-{run}", f"bob-{run}"
    pack = load_packs()[PACK]
    app = GpubillClient(base_url, cfg.api_key_values()[0])  # the app's typed client
    _top_up(app, api, cfg, alice, out, echo)
    echo(f"== jobs: {alice} exports a 30 s clip four ways; {bob} (no credits) tries one")
    job_ids = _submit_jobs(app, alice, bob, out, echo)
    charged = _check_receipts(app, api, job_ids, out, echo)
    _check_wallets(app, alice, bob, pack.credits - charged, out, echo)
    _check_ledger(cfg, out, echo)
    return out


def _top_up(app: GpubillClient, api: Client, cfg: Settings, alice: str, out: Outcome,
            echo: Echo) -> None:
    """``alice`` buys ``PACK``: a Checkout Session, paid by card on the Stripe stand-in
    (each webhook sent twice); expects her balance to become the pack's credits."""
    pack = load_packs()[PACK]
    echo(f"== top-up: {alice} buys pack '{PACK}' ({pack.price / 100:.2f} {pack.currency.upper()}"
         f" → {pack.credits} credits)")
    session_id = ""
    try:
        session_id = app.create_topup(alice, PACK, idempotency_key=f"topup-{alice}").session_id
        echo(f"   POST /v1/topups → 201 session {session_id}")
    except ApiError as err:
        out.expect(False, f"top-up session created (got {err})")
    paid = StripeStandIn(cfg.stripe_api_base).pay(session_id, duplicate=True) if session_id else {}
    sent = [e["type"] for e in paid.get("events", [])]
    echo(f"   paid by card on the Stripe stand-in; signed webhooks (each twice): {', '.join(sent)}"
         f" → {paid.get('deliveries')}")
    out.expect("checkout.session.completed" in sent, "stand-in sent checkout.session.completed")
    out.expect(bool(paid.get("deliveries")) and set(paid["deliveries"]) == {200},
               "every webhook delivery answered 200")
    funded = api.wait(lambda: app.wallet(alice).balance == pack.credits)
    out.expect(bool(funded), f"{alice} credited {pack.credits}")


def _submit_jobs(app: GpubillClient, alice: str, bob: str, out: Outcome, echo: Echo) -> list[str]:
    """``alice`` submits every job of ``JOBS`` (their ids, in order); ``bob`` is refused 402."""
    job_ids: list[str] = []
    for job_type, params, job_input in JOBS:
        try:
            job_ids.append(app.submit_job(alice, job_type, params, job_input,
                                          idempotency_key=f"{alice}-{job_type}").job_id)
        except ApiError as err:
            out.expect(False, f"{job_type} accepted (got {err})")
    try:
        app.submit_job(bob, "framing", {"duration_s": 30, "resolution": "1080p"}, {})
        out.expect(False, f"{bob} refused with 402 (got 202)")
    except ApiError as err:
        echo(f"   {bob}: {err.status} {err.message}")
        out.expect(err.status == 402, f"{bob} refused with 402 (got {err.status})")
    return job_ids


def _check_receipts(app: GpubillClient, api: Client, job_ids: list[str], out: Outcome,
                    echo: Echo) -> int:
    """Wait for each job's receipt (90 s each) and check it: ``track`` failed and charged
    0, the others completed with 0 < charge <= hold and charge + released = hold.
    Returns the credits charged in all."""
    try:
        receipts = [app.wait_for_receipt(j, timeout_s=90).model_dump() for j in job_ids]
    except TimeoutError as err:
        out.expect(False, f"every job reached a terminal state ({err})")
        receipts = [api.job(j) for j in job_ids]
    echo(f"   {'type':<8} {'status':<10} {'hold':>5} {'exec ms':>8} {'charge':>7} {'released':>9}")
    for r in receipts:
        echo(f"   {r['type']:<8} {r['status']:<10} {r['quote']['hold']:>5} "
             f"{str(r['runpod']['execution_ms']):>8} {str(r['charge']):>7} {str(r['released']):>9}")
        hold = r["quote"]["hold"]
        if r["type"] == "track":
            out.expect(r["status"] == JobStatus.FAILED, "track job failed on the stand-in")
            out.expect(r["charge"] == 0 and r["released"] == hold, "failed job charged 0, hold released")
        else:
            out.expect(r["status"] == JobStatus.COMPLETED, f"{r['type']} completed")
            out.expect(r["charge"] is not None and 0 < r["charge"] <= hold, f"{r['type']} charge within hold")
            out.expect((r["charge"] or 0) + (r["released"] or 0) == hold, f"{r['type']} charge + released = hold")
    return sum(r["charge"] or 0 for r in receipts)


def _check_wallets(app: GpubillClient, alice: str, bob: str, alice_balance: int, out: Outcome,
                   echo: Echo) -> None:
    """``alice`` has ``alice_balance`` credits and holds nothing; ``bob``'s wallet is untouched."""
    pack = load_packs()[PACK]
    charged = pack.credits - alice_balance
    echo("== wallets")
    wallets = {u: app.wallet(u).model_dump(exclude_unset=True) for u in (alice, bob)}  # as answered
    for u, w in wallets.items():
        echo(f"   {u:<14} balance {w['balance']:>5}  held {w['held']:>3}  available {w['available']:>5}")
    out.expect(wallets[alice]["balance"] == alice_balance,
               f"{alice} balance = {pack.credits} - {charged}")
    out.expect(wallets[alice]["held"] == 0, f"{alice} holds nothing")
    out.expect(wallets[bob] == {"user_id": bob, "balance": 0, "held": 0, "available": 0, "status": "active"},
               f"{bob} unchanged")


def _check_ledger(cfg: Settings, out: Outcome, echo: Echo) -> None:
    """The ledger invariants (``ledger.invariants.check``) hold on the database."""
    engine = make_engine(cfg.sqlalchemy_url)
    try:
        with transaction(make_sessionmaker(engine)) as s:
            violations = check(s)
    finally:
        engine.dispose()
    echo(f"== ledger invariants: {len(violations)} violation(s)")
    for v in violations:
        echo(f"   {v}")
    out.expect(not violations, "ledger invariants hold")


def run_demo(data_dir: Path, echo: Echo = print) -> bool:
    """Start a fresh stack in ``data_dir`` (wiped), run the scenario, stop. True if all held."""
    from gpubill.launcher import Stack

    shutil.rmtree(data_dir, ignore_errors=True)
    echo(f"starting gpubill on embedded defaults in {data_dir} …")
    with Stack(env={"GPUBILL_DATA_DIR": str(data_dir)}) as stack:
        echo(f"   receiver {stack.receiver_url}, broker {stack.settings.broker_url}")
        outcome = run_scenario(stack.receiver_url, stack.settings, echo)
        echo("stopping …")
    for failure in outcome.failures:
        echo(f"FAILED: {failure}")
    echo("demo OK" if outcome.ok else "demo FAILED")
    return outcome.ok
