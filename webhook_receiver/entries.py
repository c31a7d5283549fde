"""``GET /v1/wallets/{user_id}/entries``: the wallet's ledger entries, newest first.

Query: ``limit`` (1–200, default 50), ``cursor`` (the previous page's ``next_cursor``).
Answer: ``{"user_id", "entries": [{id, kind, amount, op_key, ref, created_at}],
"next_cursor"}``; amounts are signed int credits (see ``ledger.entries``). A malformed
cursor or limit → 422; an unknown wallet → an empty list.
"""
from __future__ import annotations


from flask import Blueprint, jsonify, request

from ledger import entries
from ledger.db import transaction
from webhook_receiver import services
from webhook_receiver.auth import require_api_key
from webhook_receiver.errors import ApiError
from webhook_receiver.schemas import check_user_id

bp = Blueprint("entries", __name__, url_prefix="/v1")


def entry_body(e: entries.Entry) -> dict[str, object]:
    return {"id": e.id, "kind": e.kind, "amount": e.amount, "op_key": e.op_key, "ref": e.ref,
            "created_at": e.created_at.isoformat() + "Z"}


@bp.get("/wallets/<user_id>/entries")
@require_api_key
def list_entries(user_id: str):  # type: ignore[no-untyped-def]
    check_user_id(user_id)
    raw_limit = request.args.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= entries.MAX_LIMIT:
        raise ApiError(422, "invalid_request", f"limit must be an integer from 1 to {entries.MAX_LIMIT}",
                       [{"field": "limit", "message": "out of range"}])
    cursor = request.args.get("cursor") or None
    with transaction(services.sessions()) as s:
        try:
            result = entries.page(s, user_id, cursor=cursor, limit=int(raw_limit))
        except ValueError as err:
            raise ApiError(422, "invalid_request", str(err),
                           [{"field": "cursor", "message": "not a cursor from this API"}]) from None
    return jsonify({"user_id": user_id, "entries": [entry_body(e) for e in result.entries],
                    "next_cursor": result.next_cursor})
