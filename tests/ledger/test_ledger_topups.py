"""Top-ups, refunds, disputes and invoice grants on the ledger alone (``ledger.topups``),
with no running stack: each step is the ledger call the worker makes for one Stripe
event, in its own transaction, so mutation testing (``make mutation``) reaches them.

Expected credits come from the reference model (``tests/model/wallets.py``: pack data
from ``pricing/packs.toml``, the claw-back rule ``ceil(credits × taken / amount_total)``
written independently) or from hand arithmetic spelled out beside the assertion; never
from the ledger's own columns. The end-to-end versions through Stripe's stand-in are
``test_stripe_refunds.py`` / ``test_stripe_topups.py`` / ``test_stripe_subscriptions.py``.
"""
from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from ledger import operations as ops, topups
from ledger.db import transaction
from ledger.models import (
    STRIPE_CLEARING,
    LedgerTransaction,
    Posting,
    Reversal,
    StripeCustomer,
    Topup,
    Wallet,
    wallet_account,
)
from pricing import load_packs
from tests.factories import HoldFactory
from tests.model import rates
from tests.model.wallets import Model
from tests.stripe_flows import transactions

pytestmark = pytest.mark.integration

PACKS = rates.packs()  # the model's own reading of pricing/packs.toml


def tok(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


def balance(sessions: sessionmaker[Session], user: str) -> int:
    with transaction(sessions) as s:
        w = s.get(Wallet, user)
        return w.balance if w else 0


def ledger_rows(sessions: sessionmaker[Session], user: str) -> list[tuple[str, str, int, str | None]]:
    """(op_key, kind, amount, ref) of every transaction of ``user``, in order."""
    return [(key, kind, amount, ref) for kind, key, amount, ref in transactions(sessions, user)]


def reversal(sessions: sessionmaker[Session], rid: str) -> tuple[str, str, int, int, str | None]:
    """(kind, status, amount cents, clawed credits, charge) of reversal ``rid``."""
    with transaction(sessions) as s:
        r = s.get(Reversal, rid)
        assert r is not None
        return r.kind, r.status, r.amount, r.clawed, r.charge_id


class Buyer:
    """One wallet that buys packs and gets refunded / disputed, mirrored in the model."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions, self.user, self.model = sessions, tok("u"), Model()

    def buy(self, pack: str) -> tuple[str, str, str]:
        """Open, link and credit a top-up of ``pack``: (session id, payment intent, charge)."""
        sid, pi, ch = tok("cs"), tok("pi"), tok("ch")
        with transaction(self.sessions) as s:
            t = topups.open_topup(s, session_id=sid, user_id=self.user, pack=load_packs()[pack])
            topups.link(s, t, payment_intent=pi)
            status = topups.credit(s, t, amount_total=PACKS[pack]["price"],
                                   currency=PACKS[pack]["currency"], event_id=tok("evt"))
        assert status == "credited"
        self.model.topup(sid, self.user, pack)
        return sid, pi, ch

    def refund(self, sid: str, ch: str, rid: str, cents: int, status: str,
               *, state: str | None = None) -> int:
        with transaction(self.sessions) as s:
            t = topups.by_session(s, sid)
            moved = topups.apply_refund(s, t, refund_id=rid, amount=cents, status=status, charge=ch)
        self.model.reversal(sid, rid, "refund", cents, state or status)
        return moved

    def dispute(self, sid: str, ch: str, did: str, cents: int, step: str, state: str) -> int:
        with transaction(self.sessions) as s:
            t = topups.by_session(s, sid)
            moved = topups.apply_dispute(s, t, dispute_id=did, amount=cents, step=step, charge=ch)
        self.model.reversal(sid, did, "dispute", cents, state)
        return moved

    def check(self) -> None:
        assert balance(self.sessions, self.user) == self.model.balance(self.user)


# --- credit, mismatch, close ---------------------------------------------------------

def test_open_topup_stores_the_pack_and_is_race_safe(sessions, invariants) -> None:
    sid, user = tok("cs"), tok("u")
    with transaction(sessions) as s:
        t = topups.open_topup(s, session_id=sid, user_id=user, pack=load_packs()["medium"],
                              customer_id="cus_x")
        first_id = t.id
    with transaction(sessions) as s:  # a second open (racing request) returns the row unchanged
        again = topups.open_topup(s, session_id=sid, user_id="someone-else", pack=load_packs()["small"])
        assert again.id == first_id
        row = (again.user_id, again.pack, again.credits, again.amount_total, again.currency,
               again.status, again.customer_id)
    m = PACKS["medium"]
    assert row == (user, "medium", m["credits"], m["price"], m["currency"], "open", "cus_x")
    assert balance(sessions, user) == 0
    invariants()


def test_credit_posts_the_pack_once_under_its_key(sessions, invariants) -> None:
    b = Buyer(sessions)
    sid, _, _ = b.buy("large")
    with transaction(sessions) as s:  # the same event again (or a twin): nothing more
        t = topups.by_session(s, sid)
        assert topups.credit(s, t, amount_total=PACKS["large"]["price"], currency="usd",
                             event_id="evt_again") == "credited"
        assert t.credited_at is not None and t.event_id != "evt_again"
    credits = PACKS["large"]["credits"]
    assert ledger_rows(sessions, b.user) == [(f"topup:{sid}", "topup", credits, sid)]
    with transaction(sessions) as s:
        legs = sorted(s.execute(select(Posting.account_id, Posting.amount).join(
            LedgerTransaction, LedgerTransaction.id == Posting.transaction_id)
            .where(LedgerTransaction.op_key == f"topup:{sid}")).all())
    assert legs == sorted([(wallet_account(b.user), credits), (STRIPE_CLEARING, -credits)])
    b.check()
    invariants()


@pytest.mark.parametrize("paid", [(499, "usd"), (501, "usd"), (500, "eur")])
def test_a_payment_that_differs_from_the_pack_is_flagged_not_credited(sessions, invariants, paid) -> None:
    sid, user = tok("cs"), tok("u")
    with transaction(sessions) as s:
        t = topups.open_topup(s, session_id=sid, user_id=user, pack=load_packs()["small"])
        assert topups.credit(s, t, amount_total=paid[0], currency=paid[1], event_id="evt_1") == "mismatch"
        assert t.note == (f"session {sid}: paid {paid[0]} {paid[1]}, top-up {t.id} (pack small) "
                          f"costs 500 usd")
    with transaction(sessions) as s:  # flagged stays flagged, even when the right amount comes
        t = topups.by_session(s, sid)
        assert topups.credit(s, t, amount_total=500, currency="usd", event_id="evt_2") == "mismatch"
        assert t.status == "mismatch" and t.credited_at is None
    assert balance(sessions, user) == 0 and ledger_rows(sessions, user) == []
    invariants()


def test_close_only_an_open_topup_and_refuse_to_credit_it_after(sessions, invariants) -> None:
    sid, user = tok("cs"), tok("u")
    with transaction(sessions) as s:
        t = topups.open_topup(s, session_id=sid, user_id=user, pack=load_packs()["small"])
        assert topups.close(s, t, "expired", "session expired (evt_1)") is True
        assert (t.status, t.note) == ("expired", "session expired (evt_1)") and t.closed_at is not None
        assert topups.close(s, t, "failed", "later") is False
        assert (t.status, t.note) == ("expired", "session expired (evt_1)")
    with transaction(sessions) as s:
        t = topups.by_session(s, sid)
        with pytest.raises(topups.Rejected, match=rf"top-up {t.id} \({sid}\) is expired: session expired"):
            topups.credit(s, t, amount_total=500, currency="usd", event_id="evt_2")
    b = Buyer(sessions)
    bsid, _, _ = b.buy("small")
    with transaction(sessions) as s:
        t = topups.by_session(s, bsid)
        assert topups.close(s, t, "expired", "too late") is False and t.status == "credited"
    assert balance(sessions, user) == 0
    b.check()
    invariants()


def test_closed_without_note_says_not_creditable(sessions) -> None:
    sid = tok("cs")
    with transaction(sessions) as s:
        t = topups.open_topup(s, session_id=sid, user_id=tok("u"), pack=load_packs()["small"])
        t.status = "failed"
        with pytest.raises(topups.Rejected, match=r"is failed: not creditable$"):
            topups.credit(s, t, amount_total=500, currency="usd", event_id="evt")
        s.rollback()


def test_a_locked_read_sees_the_row_as_it_is_now(sessions) -> None:
    """``by_session`` / ``by_payment_intent`` lock and re-read the row even when this
    session loaded it before: what another writer committed in between (here a Core
    UPDATE the session's identity map does not see) is what the step acts on."""
    b = Buyer(sessions)
    sid, pi, _ = b.buy("small")
    with sessions() as s:
        s.begin()
        first = topups.by_session(s, sid)  # kept: the session's identity map holds it
        assert first.status == "credited"
        s.connection().execute(update(Topup.__table__).where(Topup.__table__.c.checkout_session_id == sid)
                               .values(status="mismatch"))
        assert topups.by_session(s, sid).status == "mismatch"
        assert topups.by_payment_intent(s, pi) is first and first.status == "mismatch"
        s.rollback()


# --- links -----------------------------------------------------------------------------

def test_link_keeps_the_first_value_and_learns_the_customer(sessions) -> None:
    sid, user = tok("cs"), tok("u")
    with transaction(sessions) as s:
        t = topups.open_topup(s, session_id=sid, user_id=user, pack=load_packs()["small"])
        topups.link(s, t, payment_intent="pi_1", charge="ch_1", customer=f"cus_{sid}")
        topups.link(s, t, payment_intent="pi_2", charge="ch_2", customer="cus_other")
        topups.link(s, t)  # nothing to learn
        assert (t.payment_intent_id, t.charge_id, t.customer_id) == ("pi_1", "ch_1", f"cus_{sid}")
    with transaction(sessions) as s:
        assert topups.by_payment_intent(s, "pi_1").checkout_session_id == sid
        assert topups.wallet_of_customer(s, f"cus_{sid}") == user
        assert s.get(StripeCustomer, f"cus_{sid}").user_id == user


def test_customer_link_first_wins_and_unknown_is_not_yet(sessions) -> None:
    cus = tok("cus")
    with transaction(sessions) as s:
        with pytest.raises(topups.NotYet, match=f"no wallet linked to customer {cus} yet"):
            topups.wallet_of_customer(s, cus)
        assert topups.link_customer(s, cus, "alice") == "alice"
        assert topups.link_customer(s, cus, "bob") == "alice"


def test_for_charge_finds_by_charge_then_payment_intent(sessions) -> None:
    b = Buyer(sessions)
    sid, pi, ch = b.buy("small")
    with transaction(sessions) as s:
        with pytest.raises(topups.NotYet, match="no top-up linked to charge ch_none / payment_intent None yet"):
            topups.for_charge(s, charge="ch_none", payment_intent=None)
        with pytest.raises(topups.NotYet, match="no top-up linked to charge None / payment_intent pi_none"):
            topups.for_charge(s, charge=None, payment_intent="pi_none")
        t = topups.for_charge(s, charge=ch, payment_intent=pi)  # charge unknown yet: by PI, link it
        assert t.checkout_session_id == sid and t.charge_id == ch
    with transaction(sessions) as s:  # now by the charge alone
        assert topups.for_charge(s, charge=ch, payment_intent=None).checkout_session_id == sid
        assert topups.for_charge(s, charge=ch, payment_intent="pi_wrong").checkout_session_id == sid


def test_for_charge_of_an_uncredited_or_closed_topup(sessions) -> None:
    open_sid, flagged_sid = tok("cs"), tok("cs")
    with transaction(sessions) as s:
        t = topups.open_topup(s, session_id=open_sid, user_id=tok("u"), pack=load_packs()["small"])
        topups.link(s, t, payment_intent=f"pi_{open_sid}")
        f = topups.open_topup(s, session_id=flagged_sid, user_id=tok("u"), pack=load_packs()["small"])
        topups.link(s, f, payment_intent=f"pi_{flagged_sid}")
        topups.credit(s, f, amount_total=1, currency="usd", event_id="evt")
    with transaction(sessions) as s:
        with pytest.raises(topups.NotYet, match=rf"top-up \d+ \({open_sid}\) is not credited yet"):
            topups.for_charge(s, charge=None, payment_intent=f"pi_{open_sid}")
        with pytest.raises(topups.Rejected, match=rf"top-up \d+ \({flagged_sid}\) is mismatch$"):
            topups.for_charge(s, charge=None, payment_intent=f"pi_{flagged_sid}")


# --- refunds ---------------------------------------------------------------------------

def test_partial_refunds_claw_back_their_share_and_a_full_refund_every_credit(sessions, invariants) -> None:
    b = Buyer(sessions)
    sid, _, ch = b.buy("medium")  # 2000 cents bought 2200 credits
    # 333 cents: ceil(2200 × 333 / 2000) = ceil(366.3) = 367
    assert b.refund(sid, ch, "re_a" + sid, 333, "pending") == 367
    b.check()
    # 1000 more (1333 taken): ceil(2200 × 1333 / 2000) = ceil(1466.3) = 1467 → 1100 more
    assert b.refund(sid, ch, "re_b" + sid, 1000, "succeeded") == 1467 - 367
    # the rest (2000 taken): every credit → 2200 − 1467 = 733
    assert b.refund(sid, ch, "re_c" + sid, 667, "succeeded") == 733
    b.check()
    assert balance(sessions, b.user) == 0
    assert reversal(sessions, "re_a" + sid) == ("refund", "active", 333, 367, ch)
    assert ledger_rows(sessions, b.user)[1:] == [
        (f"refund:re_a{sid}", "clawback", -367, f"re_a{sid}"),
        (f"refund:re_b{sid}", "clawback", -1100, f"re_b{sid}"),
        (f"refund:re_c{sid}", "clawback", -733, f"re_c{sid}"),
    ]
    invariants()


def test_a_refund_beyond_the_topup_is_capped_and_snapshots_apply_once(sessions, invariants) -> None:
    b = Buyer(sessions)
    sid, _, ch = b.buy("small")  # 500 cents, 500 credits
    assert b.refund(sid, ch, "re_1c" + sid, 1, "pending") == 1  # one cent, one credit
    assert ledger_rows(sessions, b.user)[-1] == (f"refund:re_1c{sid}", "clawback", -1, f"re_1c{sid}")
    assert b.refund(sid, ch, "re_1c" + sid, 1, "failed") == -1
    assert ledger_rows(sessions, b.user)[-1] == (f"refund:re_1c{sid}:restore", "restore", 1, f"re_1c{sid}")
    assert b.refund(sid, ch, "re_" + sid, 400, "pending") == 400
    assert b.refund(sid, ch, "re_" + sid, 400, "succeeded") == 0  # the same refund, later state
    assert b.refund(sid, ch, "re_x" + sid, 900, "succeeded") == 100  # capped at 500 taken
    b.check()
    assert balance(sessions, b.user) == 0
    invariants()


def test_a_failed_refund_restores_exactly_what_it_took(sessions, invariants) -> None:
    b = Buyer(sessions)
    sid, _, ch = b.buy("medium")
    assert b.refund(sid, ch, "re_1" + sid, 1, "pending") == 2  # ceil(2200 × 1 / 2000) = 2
    assert b.refund(sid, ch, "re_2" + sid, 1, "pending") == 1  # ceil(2200 × 2 / 2000) = 3, minus 2
    b.check()
    # re_1 fails: taken 1 cent → share 2, clawed so far 3 → restore 1
    assert b.refund(sid, ch, "re_1" + sid, 1, "failed") == -1
    b.check()
    assert reversal(sessions, "re_1" + sid)[1] == "failed"
    # an older snapshot of the failed refund (pending) after its failure changes nothing
    assert b.refund(sid, ch, "re_1" + sid, 1, "pending", state="failed") == 0
    assert b.refund(sid, ch, "re_1" + sid, 1, "canceled", state="failed") == 0
    b.check()
    rows = ledger_rows(sessions, b.user)
    assert rows[-1] == (f"refund:re_1{sid}:restore", "restore", 1, f"re_1{sid}")
    invariants()


def test_a_refund_failed_before_it_was_seen_takes_nothing(sessions, invariants) -> None:
    b = Buyer(sessions)
    sid, _, ch = b.buy("small")
    assert b.refund(sid, ch, "re_" + sid, 500, "canceled") == 0
    assert reversal(sessions, "re_" + sid) == ("refund", "failed", 500, 0, ch)
    assert b.refund(sid, ch, "re_" + sid, 500, "succeeded", state="canceled") == 0
    b.check()
    assert balance(sessions, b.user) == PACKS["small"]["credits"]
    assert len(ledger_rows(sessions, b.user)) == 1
    invariants()


def test_a_refund_after_the_credits_were_spent_leaves_a_debt(sessions, invariants) -> None:
    b = Buyer(sessions)
    sid, _, ch = b.buy("small")
    h = HoldFactory.create(sessions=sessions, user_id=b.user, amount=450)  # spend 450 of the 500 credits on a job
    with transaction(sessions) as s:
        ops.capture(s, hold_id=h.id, amount=450, op_key=tok("cap"))
    assert b.refund(sid, ch, "re_" + sid, 500, "succeeded") == 500
    assert balance(sessions, b.user) == 500 - 450 - 500  # −450: a debt of what was spent
    invariants()


# --- disputes --------------------------------------------------------------------------

def test_dispute_withdrawn_then_won_restores(sessions, invariants) -> None:
    b = Buyer(sessions)
    sid, _, ch = b.buy("large")  # 3500 cents, 4000 credits
    did = "dp_" + sid
    assert b.dispute(sid, ch, did, 1000, "inquiry", "inquiry") == 0
    assert b.dispute(sid, ch, did, 900, "inquiry", "inquiry") == 0  # a repeated step changes nothing
    assert reversal(sessions, did)[1:4] == ("inquiry", 1000, 0)
    # withdrawn (amount may change from the inquiry's): ceil(4000 × 1200 / 3500) = ceil(1371.4) = 1372
    assert b.dispute(sid, ch, did, 1200, "withdrawn", "withdrawn") == 1372
    assert reversal(sessions, did)[1:4] == ("withdrawn", 1200, 1372)
    b.check()
    assert b.dispute(sid, ch, did, 1200, "withdrawn", "withdrawn") == 0
    assert b.dispute(sid, ch, did, 1200, "inquiry", "withdrawn") == 0
    assert b.dispute(sid, ch, did, 1200, "won", "reinstated") == -1372
    assert reversal(sessions, did)[1:4] == ("reinstated", 1200, 0)
    assert b.dispute(sid, ch, did, 1200, "lost", "reinstated") == 0  # terminal
    assert b.dispute(sid, ch, did, 1200, "won", "reinstated") == 0
    b.check()
    assert ledger_rows(sessions, b.user)[1:] == [
        (f"dispute:{did}:withdrawn", "clawback", -1372, did),
        (f"dispute:{did}:reinstated", "restore", 1372, did),
    ]
    invariants()


def test_dispute_withdrawn_then_lost_stays_clawed_until_won_on_appeal(sessions, invariants) -> None:
    """``lost`` keeps the claw-back; funds reinstated after a won appeal (API
    2026-10-28) restore it once (issue 12 case 7)."""
    b = Buyer(sessions)
    sid, _, ch = b.buy("medium")
    did = "dp_" + sid
    assert b.dispute(sid, ch, did, 2000, "withdrawn", "withdrawn") == 2200
    assert b.dispute(sid, ch, did, 2000, "lost", "lost") == 0
    assert reversal(sessions, did)[1:4] == ("lost", 2000, 2200)
    b.check()
    assert balance(sessions, b.user) == 0
    assert b.dispute(sid, ch, did, 2000, "won", "reinstated") == -2200
    assert b.dispute(sid, ch, did, 2000, "won", "reinstated") == 0  # once
    assert reversal(sessions, did)[1:4] == ("reinstated", 2000, 0)
    b.check()
    assert balance(sessions, b.user) == 2200
    invariants()


def test_dispute_lost_unseen_withdrawal_claws_back_and_won_at_once_moves_nothing(sessions, invariants) -> None:
    b = Buyer(sessions)
    sid, _, ch = b.buy("medium")
    # lost with no withdrawal seen: claws back at once, ceil(2200 × 500 / 2000) = 550
    assert b.dispute(sid, ch, "dp_l" + sid, 500, "lost", "lost") == 550
    assert reversal(sessions, "dp_l" + sid) == ("dispute", "lost", 500, 550, ch)
    # an inquiry that turns lost: claws its share, 500 + 300 taken → ceil(880) = 880 − 550 = 330
    assert b.dispute(sid, ch, "dp_i" + sid, 300, "inquiry", "inquiry") == 0
    assert b.dispute(sid, ch, "dp_i" + sid, 300, "lost", "lost") == 330
    # won before any withdrawal, fresh or after an inquiry: nothing moves
    assert b.dispute(sid, ch, "dp_w" + sid, 700, "won", "won") == 0
    assert reversal(sessions, "dp_w" + sid)[1:4] == ("won", 700, 0)
    assert b.dispute(sid, ch, "dp_q" + sid, 100, "inquiry", "inquiry") == 0
    assert b.dispute(sid, ch, "dp_q" + sid, 100, "won", "won") == 0
    assert reversal(sessions, "dp_q" + sid)[1] == "won"
    b.check()
    invariants()


def test_refunds_and_disputes_of_one_topup_share_one_ceiling(sessions, invariants) -> None:
    b = Buyer(sessions)
    sid, _, ch = b.buy("large")  # 3500 cents, 4000 credits
    steps = [  # (kind, id, cents, step/status, model state)
        ("refund", "re_1", 1, "pending", "pending"),       # ceil(4000/3500) = 2
        ("dispute", "dp_1", 1749, "withdrawn", "withdrawn"),  # 1750 taken → 2000
        ("refund", "re_2", 1750, "succeeded", "succeeded"),   # 3500 taken → 4000
        ("refund", "re_1", 1, "failed", "failed"),            # 3499 → ceil(3998.86) = 3999
        ("dispute", "dp_1", 1749, "won", "reinstated"),       # 1750 → 2000
    ]
    for kind, rid, cents, status, state in steps:
        if kind == "refund":
            b.refund(sid, ch, rid + sid, cents, status, state=state)
        else:
            b.dispute(sid, ch, rid + sid, cents, status, state)
        b.check()
    assert balance(sessions, b.user) == 4000 - 2000
    invariants()


# --- subscription invoices -------------------------------------------------------------

def test_a_paid_invoice_grants_once_and_its_refund_claws_back(sessions, invariants) -> None:
    user, inv = tok("u"), tok("in")
    plan = rates.plans_by_price()["price_gpubill_starter_monthly"]  # 1000 cents, 1000 credits
    m = Model()
    granted = m.invoice(user, plan["price"])
    with transaction(sessions) as s:
        assert topups.link_customer(s, "cus_" + inv, user) == user
        with pytest.raises(topups.NotYet, match=f"invoice {inv} not granted yet"):
            topups.link_invoice_payment(s, invoice_id=inv, payment_intent="pi_" + inv, charge=None)
    for expect in (True, False):  # the event, then its replay
        with transaction(sessions) as s:
            assert topups.grant_invoice(s, invoice_id=inv, user_id=user, credits=granted,
                                        amount_paid=plan["amount"], currency="usd", plan="starter",
                                        event_id="evt_" + inv) is expect
    with transaction(sessions) as s:
        row = topups.link_invoice_payment(s, invoice_id=inv, payment_intent="pi_" + inv, charge="ch_" + inv)
        assert (row.payment_intent_id, row.charge_id) == ("pi_" + inv, "ch_" + inv)
        assert (row.pack, row.credits, row.amount_total, row.currency, row.status, row.user_id,
                row.event_id) == ("plan:starter", granted, plan["amount"], "usd", "credited", user,
                                  "evt_" + inv)
        assert row.credited_at is not None
        t = topups.for_charge(s, charge="ch_" + inv, payment_intent=None)
        # refund 250 of 1000 cents: ceil(1000 × 250 / 1000) = 250 credits
        assert topups.apply_refund(s, t, refund_id="re_" + inv, amount=250, status="succeeded",
                                   charge="ch_" + inv) == 250
    assert balance(sessions, user) == granted - 250
    assert ledger_rows(sessions, user) == [
        (f"invoice:{inv}", "grant", granted, inv),
        (f"refund:re_{inv}", "clawback", -250, "re_" + inv),
    ]
    invariants()


def test_a_free_invoice_grants_without_a_topup_row_and_zero_credits_grant_nothing(sessions, invariants) -> None:
    user = tok("u")
    trial, empty, paid_empty, one = tok("in"), tok("in"), tok("in"), tok("in")
    with transaction(sessions) as s:
        assert topups.grant_invoice(s, invoice_id=one, user_id=user, credits=1, amount_paid=0,
                                    currency="usd", plan="starter", event_id="evt") is True
        assert topups.grant_invoice(s, invoice_id=trial, user_id=user, credits=100, amount_paid=0,
                                    currency="usd", plan="starter", event_id="evt") is True
        assert topups.by_invoice(s, trial) is None
        assert topups.grant_invoice(s, invoice_id=empty, user_id=user, credits=0, amount_paid=0,
                                    currency="usd", plan="starter", event_id="evt") is False
        # paid but granting no credits: a credited row (Stripe may take it back) and no posting
        assert topups.grant_invoice(s, invoice_id=paid_empty, user_id=user, credits=0, amount_paid=1,
                                    currency="usd", plan="x" * 40, event_id="evt") is False
        row = topups.by_invoice(s, paid_empty)
        assert row.status == "credited" and row.pack == ("plan:" + "x" * 40)[:32]
    assert balance(sessions, user) == 1 + 100
    assert ledger_rows(sessions, user) == [(f"invoice:{one}", "grant", 1, one),
                                           (f"invoice:{trial}", "grant", 100, trial)]
    invariants()
