"""The one user-id type: what the app may name a wallet by.

A user id is 1–64 characters of ``A–Z a–z 0–9 _ . : @ -`` (``USER_ID_ALPHABET``),
matched in full. Python's ``re`` ``$`` also matches just before a trailing ``\\n``, so
``"dave\\n"`` once passed a ``^…$`` check in the worker and credited a wallet the API
would not let anyone spend; ``USER_ID`` ends in ``\\Z`` instead, and ``is_user_id``
uses ``fullmatch``. ``USER_ID_PATTERN`` is the same rule for pydantic ``Field(pattern=…)``
and JSON Schema, whose ``$`` (Rust ``regex``, ECMA-262 without the ``m`` flag) is the
end of the text. Used by the receiver (bodies and URLs), the worker's Stripe handling
(``client_reference_id`` / ``metadata.user_id``) and the CLI.
"""
from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

USER_ID_ALPHABET = "A-Za-z0-9_.:@-"
USER_ID_MAX = 64
USER_ID_PATTERN = rf"^[{USER_ID_ALPHABET}]{{1,{USER_ID_MAX}}}$"
USER_ID = re.compile(rf"[{USER_ID_ALPHABET}]{{1,{USER_ID_MAX}}}\Z")  # .match() is a full match

UserId = Annotated[str, Field(pattern=USER_ID_PATTERN, description="1-64 of A-Z a-z 0-9 _ . : @ -")]


def is_user_id(value: object) -> bool:
    """True when ``value`` is a str that is a user id in full."""
    return isinstance(value, str) and USER_ID.fullmatch(value) is not None
