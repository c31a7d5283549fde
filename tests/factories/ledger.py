"""Wallet, funded-wallet and hold factories. Every write goes through ``ledger.operations``
in one transaction (``ensure_wallet``, ``credit_topup``, ``place_hold``): no factory
writes a balance column, so the books stay double-entry and every invariant holds.

``WalletFactory.create(sessions=s)`` → the committed ``Wallet`` (detached, loaded);
``FundedWalletFactory.create(sessions=s, credits=700)`` → its wallet after a top-up of
``credits`` (op key ``test:topup:<user>``, ref ``cs_<user>`` unless given); ``HoldFactory.create(sessions=s,
user_id=u, amount=30)`` → the open ``Hold`` (expires in an hour unless given).
"""
from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import factory
from sqlalchemy.orm import Session, sessionmaker

from ledger import operations as ops
from ledger.db import transaction
from ledger.models import Hold, Wallet, utcnow, wallet_account


def user_id(prefix: str = "u") -> str:
    """A user id of its own: ``{prefix}-{10 hex}`` (the API's user-id pattern)."""
    return f"{prefix}-{secrets.token_hex(5)}"


def op_key(kind: str) -> str:
    """An operation key of its own: ``test:{kind}:{12 hex}``."""
    return f"test:{kind}:{secrets.token_hex(6)}"


class LedgerFactory(factory.Factory):
    """``build`` → an unsaved model of the declared columns; ``create`` → ``_write`` in
    the database of ``sessions`` (required: a ``sessionmaker``)."""

    class Meta:
        abstract = True

    sessions: Any = None

    @classmethod
    def _build(cls, model_class: type, *args: Any, **kwargs: Any) -> Any:
        return model_class(**{k: v for k, v in kwargs.items() if k in model_class.__table__.columns})

    @classmethod
    def _create(cls, model_class: type, *args: Any, sessions: sessionmaker[Session] | None = None,
                **kwargs: Any) -> Any:
        if sessions is None:
            raise TypeError(f"{cls.__name__}.create needs sessions=<sessionmaker>")
        return cls._write(sessions, **kwargs)

    @classmethod
    def _write(cls, sessions: sessionmaker[Session], **kwargs: Any) -> Any:
        raise NotImplementedError


class WalletFactory(LedgerFactory):
    """An empty wallet and its ledger account (``ops.ensure_wallet``, as a first top-up or
    an operator grant creates them)."""

    class Meta:
        model = Wallet

    class Params:
        prefix = "u"

    user_id = factory.LazyAttribute(lambda o: user_id(o.prefix))
    account_id = factory.LazyAttribute(lambda o: wallet_account(o.user_id))

    @classmethod
    def _write(cls, sessions: sessionmaker[Session], **kwargs: Any) -> Wallet:
        with transaction(sessions) as s:
            ops.ensure_wallet(s, kwargs["user_id"])
            return s.get_one(Wallet, kwargs["user_id"])


class FundedWalletFactory(WalletFactory):
    """A wallet credited ``credits`` by one ``ops.credit_topup`` (Stripe clearing → wallet)."""

    credits = 1000
    op_key = factory.LazyAttribute(lambda o: f"test:topup:{o.user_id}")
    ref = factory.LazyAttribute(lambda o: f"cs_{o.user_id}")  # a top-up's ref: its Checkout Session

    @classmethod
    def _write(cls, sessions: sessionmaker[Session], **kwargs: Any) -> Wallet:
        with transaction(sessions) as s:
            ops.credit_topup(s, user_id=kwargs["user_id"], amount=kwargs["credits"],
                             op_key=kwargs["op_key"], ref=kwargs["ref"])
            return s.get_one(Wallet, kwargs["user_id"])


class HoldFactory(LedgerFactory):
    """An open hold placed by ``ops.place_hold`` on ``user_id`` (funded 1000 credits by a
    ``FundedWalletFactory`` unless given)."""

    class Meta:
        model = Hold

    user_id = factory.LazyAttribute(
        lambda o: FundedWalletFactory.create(sessions=o.sessions).user_id if o.sessions else user_id())
    amount = 10
    op_key = factory.LazyFunction(lambda: op_key("hold"))
    job_id: str | None = None
    expires_at = factory.LazyFunction(lambda: utcnow() + timedelta(hours=1))

    @classmethod
    def _write(cls, sessions: sessionmaker[Session], **kwargs: Any) -> Hold:
        with transaction(sessions) as s:
            placed = ops.place_hold(s, **kwargs)
            return s.get_one(Hold, placed.hold_id)
