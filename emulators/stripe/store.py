"""The Stripe stand-in's object store: every object by kind and id, creation order,
and the event envelopes operations emit. Amounts in cents; ids are Stripe-shaped
(``cs_``, ``pi_``, ``ch_``, ``re_``, ``dp_``, ``in_``, ``sub_``, ``evt_``)."""
from __future__ import annotations

import copy
import threading
from typing import Any

from emulators.stripe import billing
from emulators.stripe.events import event as envelope

Obj = dict[str, Any]
# Store has a method named ``list``: in its body, ``list[...]`` would name that method.
Objs = list[Obj]
Sent = list[tuple[str, Obj]]


class NotFound(KeyError):
    """No such object (the API answers 404 ``resource_missing``)."""


class InvalidRequest(ValueError):
    """The operation does not apply to the object's state (400)."""


class Store:
    """Objects in memory behind one re-entrant ``lock``; the operations live in the
    subclasses (``state.StripeState``, ``subscriptions``, ``refunds``)."""

    KINDS = ("checkout.session", "payment_intent", "charge", "refund", "dispute", "invoice", "event",
             "subscription", "invoice_payment")

    def __init__(self, url_base: str = "http://127.0.0.1:8011") -> None:
        self.lock = threading.RLock()
        self.url_base = url_base
        self.objects: dict[str, dict[str, Obj]] = {k: {} for k in self.KINDS}
        self.order: dict[str, list[str]] = {k: [] for k in self.KINDS}  # creation order
        self.pi_metadata: dict[str, dict[str, str]] = {}  # session id → payment_intent_data.metadata
        self.idempotency: dict[str, tuple[str, Obj]] = {}
        self.prices = billing.price_catalogue()
        self.session_subs: dict[str, Obj] = {}  # subscription session id → its params
        self.invoice_charge: dict[str, str] = {}  # invoice id → charge id

    # -- storage -----------------------------------------------------------------------
    def _put(self, kind: str, obj: Obj) -> Obj:
        if obj["id"] not in self.objects[kind]:
            self.order[kind].append(obj["id"])
        self.objects[kind][obj["id"]] = obj
        return obj

    def get(self, kind: str, oid: str) -> Obj:
        with self.lock:
            try:
                return copy.deepcopy(self.objects[kind][oid])
            except KeyError:
                raise NotFound(f"No such {kind}: '{oid}'") from None

    def _obj(self, kind: str, oid: str) -> Obj:
        try:
            return self.objects[kind][oid]
        except KeyError:
            raise NotFound(f"No such {kind}: '{oid}'") from None

    def list(self, kind: str, *, limit: int = 10, starting_after: str | None = None,
             **filters: str) -> tuple[Objs, bool]:
        """Newest first, like Stripe's list endpoints; ``filters`` match top-level fields."""
        with self.lock:
            ids = list(reversed(self.order[kind]))
            if starting_after is not None:
                ids = ids[ids.index(starting_after) + 1:] if starting_after in ids else []
            found = [o for o in (self.objects[kind][i] for i in ids)
                     if all(o.get(k) == v for k, v in filters.items())]
            return copy.deepcopy(found[:limit]), len(found) > limit

    def _events(self, *items: tuple[str, Obj], api_version: str | None = None) -> Objs:
        out = []
        for type_, obj in items:
            ev = envelope(type_, obj)
            if api_version:
                ev["api_version"] = api_version
            self._put("event", ev)
            out.append(copy.deepcopy(ev))
        return out
