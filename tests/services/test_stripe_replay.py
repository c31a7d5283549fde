"""Parked events and replay (``gpubill events replay``), and the wallet's ledger entries
(``GET /v1/wallets/{user_id}/entries``), against the running stack."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from base.settings import get_settings
from gpubill.cli import main
from ledger.models import EventStatus
from tests.helpers import db_event, wait_for
from tests.stripe_flows import (
    bought,
    event_ids,
    open_session,
    post_all,
    settle,
    transactions,
    uid,
)

pytestmark = pytest.mark.integration



@pytest.fixture
def cli(stack, monkeypatch):
    """Run ``gpubill …`` in-process against the stack's database and broker."""
    cfg = stack.settings
    monkeypatch.setenv("GPUBILL_DATABASE_URL", cfg.sqlalchemy_url)
    monkeypatch.setenv("GPUBILL_BROKER_URL", cfg.broker_url)
    get_settings.cache_clear()

    def run(*args: str) -> str:
        result = CliRunner().invoke(main, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    yield run
    get_settings.cache_clear()


def test_a_refund_whose_topup_arrives_after_it_parked_is_revived_and_applied_once(stack, api, sessions, cli,
                                                                    invariants) -> None:
    user = uid("parked")
    session_id = open_session(api, user, "medium")
    paid = api.stripe.pay(session_id, deliver=False)
    refunded = api.stripe.refund(session_id, 1000, deliver=False)
    refund_evt = next(e["id"] for e in refunded["events"] if e["type"] == "refund.created")
    post_all(api, refunded["events"])
    # Settle every event of the refund (charge.refunded too), so none is still retrying
    # when the payment arrives below.
    assert settle(sessions, event_ids(refunded))[refund_evt] == EventStatus.FAILED
    parked = db_event(sessions, refund_evt)
    bound = stack.settings.stripe_pending_attempts
    assert parked.last_error.startswith("gave up after ")
    assert "no top-up linked to charge" in parked.last_error and parked.attempts >= bound
    assert transactions(sessions, user) == []
    # The payment arrives late: it revives the parked refund (issue 12 case 4), which is
    # applied without an operator; an operator's replay afterwards changes nothing.
    settle(sessions, post_all(api, paid["events"]))
    wait_for(lambda: db_event(sessions, refund_evt).status == EventStatus.PROCESSED, 60,
             "parked refund revived and applied")
    # medium: 2,200 credits for 2,000 cents; 1,000 cents refunded → ceil(2200 × 1000 / 2000)
    assert api.wallet(user)["balance"] == 1100
    cli("events", "replay", "--failed")
    settle(sessions, event_ids(refunded))
    assert api.wallet(user)["balance"] == 1100
    invariants()


def test_replaying_applied_events_changes_nothing(api, sessions, cli, invariants) -> None:
    user, session_id = bought(api, "small")
    refunded = api.stripe.refund(session_id, 100)
    ids = event_ids(refunded)
    settle(sessions, ids)
    before = (api.wallet(user), transactions(sessions, user))
    args = ["events", "replay"] + [a for i in ids for a in ("--id", i)]
    assert f"{len(ids)} event(s) re-enqueued" in cli(*args)
    settle(sessions, ids)
    assert (api.wallet(user), transactions(sessions, user)) == before
    listed = cli("events", "list", "--status", "processed", "--limit", "1000")
    assert all(i in listed for i in ids)
    assert api.wallet(user)["balance"] == 400
    invariants()


def test_replay_of_an_unknown_event_is_an_error(cli) -> None:
    result = CliRunner().invoke(main, ["events", "replay", "--id", "evt_nope"])
    assert result.exit_code != 0 and "no stored event evt_nope" in result.output


def test_entries_are_newest_first_with_cursor_pagination(api, sessions, invariants) -> None:
    user, session_id = bought(api, "small")
    job = api.submit(user, "framing", 30, {"emulator": {"execution_ms": 300}})
    assert job.status_code == 202
    api.wait_job(job.json()["job_id"], ("completed",))
    refunded = api.stripe.refund(session_id, 100)
    settle(sessions, event_ids(refunded))
    everything = api.entries(user, limit=200)
    kinds = [e["kind"] for e in everything["entries"]]
    assert kinds == ["clawback", "capture", "hold", "topup"], kinds
    assert everything["next_cursor"] is None
    clawback, capture, hold, topup = everything["entries"]
    job_id = job.json()["job_id"]
    assert (topup["amount"], topup["op_key"], topup["ref"]) == (500, f"topup:{session_id}", session_id)
    assert hold["ref"] == job_id and hold["amount"] > 0 and hold["op_key"] == f"job:{job_id}:hold"
    assert capture["ref"] == job_id and capture["amount"] < 0
    assert clawback["amount"] == -100 and clawback["op_key"].startswith("refund:re_")
    assert sum(e["amount"] for e in everything["entries"] if e["kind"] != "hold") == api.wallet(user)["balance"]
    stamps = [e["created_at"] for e in everything["entries"]]
    assert stamps == sorted(stamps, reverse=True)
    # Page by page, two at a time: the same entries, in the same order.
    pages, cursor = [], None
    while True:
        page = api.entries(user, limit=2, **({"cursor": cursor} if cursor else {}))
        pages += page["entries"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == everything["entries"]
    invariants()


@pytest.mark.parametrize("params", [{"cursor": "not-a-cursor"}, {"limit": "0"}, {"limit": "201"},
                                    {"limit": "ten"}])
def test_bad_entries_query_is_422(api, params) -> None:
    r = api.http.get(f"{api.base}/v1/wallets/someone/entries", params=params, timeout=10)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_unknown_wallet_has_no_entries(api) -> None:
    user = uid("nobody")
    assert api.entries(user) == {"user_id": user, "entries": [], "next_cursor": None}
