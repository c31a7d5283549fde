"""Nothing parks silently (issue 12 case 4): a Stripe event waiting for another (a refund
before its top-up) keeps waiting as long as Stripe keeps retrying — past the attempt
bound — and is applied by the delivery after its prerequisite arrives; only after the
window (3 days in production) does it park, and a parked money event is a reconcile
violation. Runs ``process_event`` as the worker does, on a database of the test's own
(the stack's sweeper must not deliver these rows), without a stack: about 1 s."""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from ledger import topups
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.models import EventStatus, StripeEvent, Wallet, utcnow
from ledger.reconcile import run_checks
from pricing import load_packs
from services import stripe_events
from tests.factories import CheckoutSessionFactory, EventFactory, RefundFactory, StripeEventFactory

pytestmark = pytest.mark.integration
DAY = 24 * 3600.0


@pytest.fixture
def factory(new_database) -> Iterator[sessionmaker[Session]]:  # type: ignore[no-untyped-def]
    engine = make_engine(new_database())
    yield make_sessionmaker(engine)
    engine.dispose()


def early_refund(factory: sessionmaker[Session], charge: str) -> str:
    """A stored ``refund.created`` of 100 cents on ``charge``, before its top-up exists."""
    refund = RefundFactory(amount=100, charge=charge, payment_intent=f"pi_{charge}")
    return StripeEventFactory.create(sessions=factory, event=EventFactory(type="refund.created", obj=refund)).id


def deliver(factory: sessionmaker[Session], event_id: str) -> str | None:
    return stripe_events.process_event(factory, event_id, livemode=False, max_attempts=2, window_s=3 * DAY)


def test_a_waiting_refund_outlasts_its_attempts_and_applies_when_the_topup_arrives(factory) -> None:
    charge, user, pack = f"ch_{secrets.token_hex(6)}", f"w-{secrets.token_hex(4)}", load_packs()["small"]
    event_id = early_refund(factory, charge)
    for _ in range(5):  # well past max_attempts = 2: still waiting, not parked
        assert deliver(factory, event_id) == stripe_events.PENDING
    with transaction(factory) as s:  # the payment arrives, credited
        topup = topups.open_topup(s, session_id=f"cs_{user}", user_id=user, pack=pack)
        topups.link(s, topup, payment_intent=f"pi_{charge}", charge=charge)
        topups.credit(s, topup, amount_total=pack.price, currency=pack.currency, event_id="evt_paid")
    assert deliver(factory, event_id) == EventStatus.PROCESSED
    with transaction(factory) as s:
        # small: 500 credits for 500 cents; 100 cents refunded → ceil(500 × 100 / 500) = 100
        assert s.get(Wallet, user).balance == 500 - 100
        assert s.get(StripeEvent, event_id).attempts == 6


def test_it_parks_only_after_stripes_retry_window_and_reconcile_names_it(factory) -> None:
    event_id = early_refund(factory, f"ch_{secrets.token_hex(6)}")
    for _ in range(3):
        assert deliver(factory, event_id) == stripe_events.PENDING
    with transaction(factory) as s:  # three days later, still nothing to refund against
        s.execute(update(StripeEvent).where(StripeEvent.id == event_id)
                  .values(received_at=utcnow() - timedelta(seconds=3 * DAY + 1)))
    assert deliver(factory, event_id) == EventStatus.FAILED
    with transaction(factory) as s:
        assert s.get(StripeEvent, event_id).last_error.startswith("gave up after 4 attempts")
        report = run_checks(s)
    [row] = [r for r in report.results if r.name == "events parked or in the wrong mode (stripe)"]
    assert [v.subject for v in row.violations] == [f"stripe event {event_id}"]


def test_a_parked_refund_is_revived_and_applied_when_its_topup_is_paid(factory) -> None:
    """Parked after the window, the refund is not left for an operator: the payment's
    ``checkout.session.completed`` revives it (due at once for the outbox sweeper) and
    the next delivery claws back its share once."""
    user = f"w-{secrets.token_hex(4)}"
    session = CheckoutSessionFactory(user=user, pack="small")
    charge = f"ch_{secrets.token_hex(6)}"
    ev = EventFactory(type="refund.created", obj=RefundFactory(amount=100, charge=charge,
                                                               payment_intent=session["payment_intent"]))
    StripeEventFactory.create(sessions=factory, event=ev, received_at=utcnow() - timedelta(seconds=3 * DAY + 1))
    for _ in range(2):
        deliver(factory, ev["id"])
    with transaction(factory) as s:
        assert s.get(StripeEvent, ev["id"]).status == EventStatus.FAILED  # parked
    paid = StripeEventFactory.create(sessions=factory, event=EventFactory(obj=session))
    assert deliver(factory, paid.id) == EventStatus.PROCESSED
    with transaction(factory) as s:
        revived = s.get(StripeEvent, ev["id"])
        assert (revived.status, revived.republish_at) == (EventStatus.RECEIVED, None)
    assert deliver(factory, ev["id"]) == EventStatus.PROCESSED
    assert deliver(factory, ev["id"]) == EventStatus.PROCESSED  # once
    with transaction(factory) as s:
        # small: 500 credits for 500 cents; 100 cents refunded → ceil(500 × 100 / 500) = 100
        assert s.get(Wallet, user).balance == 500 - 100
