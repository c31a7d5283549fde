"""Test factories (factory_boy, https://factoryboy.readthedocs.io/): wallets, holds and
jobs written through the ledger's and the services' own calls, and Stripe objects and
event envelopes in the shapes of Stripe's fixtures.

``create`` needs ``sessions=`` (a ``sessionmaker`` of the database under test);
``build`` writes nothing. Expected money in a test still comes from an independent
source (``tests/model/rates.py``, the packs and plans files), never from what a factory
or the code wrote.
"""
from tests.factories.inbox import StripeEventFactory
from tests.factories.jobs import JobFactory
from tests.factories.ledger import FundedWalletFactory, HoldFactory, WalletFactory, op_key, user_id
from tests.factories.stripe import (
    API_VERSION,
    ChargeFactory,
    CheckoutSessionFactory,
    DisputeFactory,
    EventFactory,
    InvoiceFactory,
    RefundFactory,
    SubscriptionFactory,
)

__all__ = [
    "API_VERSION", "ChargeFactory", "CheckoutSessionFactory", "DisputeFactory", "EventFactory",
    "FundedWalletFactory", "HoldFactory", "InvoiceFactory", "JobFactory", "RefundFactory",
    "StripeEventFactory", "SubscriptionFactory", "WalletFactory", "op_key", "user_id",
]
