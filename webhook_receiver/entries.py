"""``GET /v1/wallets/{user_id}/entries``: the wallet's ledger entries, newest first.

Query (``EntriesQuery``, pydantic): ``limit`` (ASCII digits, 1–200, default 50),
``cursor`` (the previous page's ``next_cursor``, base64url, ≤ 512 characters).
Answer: ``{"user_id", "entries": [{id, kind, amount, op_key, ref, created_at}],
"next_cursor"}``; amounts are signed int credits (see ``ledger.entries``). A malformed
cursor or limit → 422; an unknown wallet → an empty list.
"""
from __future__ import annotations

import re

from flask import Blueprint, jsonify
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ledger import entries
from ledger.db import transaction
from webhook_receiver import resources
from webhook_receiver.auth import require_api_key
from webhook_receiver.errors import ApiError
from webhook_receiver.schemas import check_user_id, parse_query

bp = Blueprint("entries", __name__, url_prefix="/v1")


class EntriesQuery(BaseModel):
    """Query of ``GET /v1/wallets/{user_id}/entries``. ``limit`` is matched as ASCII
    digits first: ``int()`` (and pydantic's lax int) would read ``²`` or ``٣``."""

    # An unknown parameter is a 422, as an unknown body field is (and as at Stripe): a
    # misspelt ``limt=10`` must not silently answer 50 entries (issue 13, schemathesis).
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=entries.MAX_LIMIT)
    # pydantic's patterns are Rust regex: "$" is the end of the text (no "\n" before it).
    cursor: str | None = Field(default=None, max_length=512, pattern=r"^[A-Za-z0-9_-]*$")

    @field_validator("limit", mode="before")
    @classmethod
    def _ascii_digits(cls, v: object) -> object:
        if isinstance(v, str) and not re.fullmatch(r"[0-9]{1,4}", v):
            raise ValueError(f"must be an integer from 1 to {entries.MAX_LIMIT}")
        return v


def entry_body(e: entries.Entry) -> dict[str, object]:
    return {"id": e.id, "kind": e.kind, "amount": e.amount, "op_key": e.op_key, "ref": e.ref,
            "created_at": e.created_at.isoformat() + "Z"}


@bp.get("/wallets/<user_id>/entries")
@require_api_key
def list_entries(user_id: str):
    check_user_id(user_id)
    query: EntriesQuery = parse_query(EntriesQuery)
    with transaction(resources.sessions()) as s:
        try:
            result = entries.page(s, user_id, cursor=query.cursor or None, limit=query.limit)
        except ValueError as err:
            raise ApiError(422, "invalid_request", str(err),
                           [{"field": "cursor", "message": "not a cursor from this API"}]) from None
    return jsonify({"user_id": user_id, "entries": [entry_body(e) for e in result.entries],
                    "next_cursor": result.next_cursor})
