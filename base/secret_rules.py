"""What production accepts as a secret (``GPUBILL_ENV=production``).

Every secret setting is refused when it is

* a development default (``base.settings.DEV_*``: public, in this repository);
* an ``.env.example`` placeholder — anything containing ``...``, ``change-me``,
  ``changeme``, ``long-random-string``, ``placeholder``, ``example`` or ``replace``,
  or shaped like ``app-key-1``;
* shorter than its documented minimum (``MIN_LENGTH``), counted after any fixed
  prefix: webhook secrets as Stripe issues them, ``whsec_`` + ≥ 32 characters
  (the signing secret shown for an endpoint, docs.stripe.com/webhooks#verify-events);
  API keys, the RunPod token secret and our own notify secret ≥ 32 characters (with
  ``secrets.token_urlsafe(32)``, 43 characters, as the way to make one); the Stripe and
  RunPod API keys ≥ 32 (both issue far longer); Flower's ``user:password`` a password
  of ≥ 16.

A guessable webhook secret lets anyone mint credits with a signed
``checkout.session.completed``; so production refuses to start rather than run with one.
The rules are plain functions of values, so they are tested without any environment.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

MIN_LENGTH = 32
MIN_PASSWORD = 16
STRIPE_WEBHOOK_PREFIX = "whsec_"
_PLACEHOLDER = re.compile(r"\.\.\.|change-?me|long-random-string|placeholder|example|replace"
                          r"|^app-key-\d+$", re.IGNORECASE)


def is_placeholder(value: str) -> bool:
    """True for ``.env.example``-style stand-ins (``whsec_...``, ``app-key-1``,
    ``ops:change-me-too``, ``long-random-string``)."""
    return bool(_PLACEHOLDER.search(value))


def problem(value: str, *, dev: Iterable[str], min_length: int = MIN_LENGTH, prefix: str = "") -> str | None:
    """Why ``value`` is not a production secret, or None when it is acceptable."""
    if value in set(dev):
        return "is a development default"
    if is_placeholder(value):
        return "is a placeholder"
    if prefix and not value.startswith(prefix):
        return f"must start with {prefix}"
    if len(value) - len(prefix) < min_length:
        return f"is shorter than {prefix + ' + ' if prefix else ''}{min_length} characters"
    return None


def basic_auth_problem(value: str, *, dev: Iterable[str]) -> str | None:
    """``user:password`` with a user and a password of ≥ ``MIN_PASSWORD`` characters."""
    user, sep, password = value.partition(":")
    if not (user and sep):
        return "must be user:password"
    return problem(value, dev=dev, min_length=0) or problem(password, dev=dev, min_length=MIN_PASSWORD)


def url_password_problem(url: str) -> str | None:
    """A password inside a database or broker URL must not be a placeholder."""
    m = re.match(r"^[a-z0-9+]+://[^:/@]*:([^@/]+)@", url)
    return "has a placeholder password" if m and is_placeholder(m.group(1)) else None
