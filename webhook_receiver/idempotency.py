"""``Idempotency-Key`` for ``POST /v1/jobs``, ``/v1/topups``, ``/v1/subscriptions`` (Stripe's semantics).

The first answer to a key is stored with a SHA-256 of the request body (canonical JSON:
sorted keys, no whitespace), in the same transaction as the job it created; the same
key and body is answered the same (status code and body, header
``Idempotent-Replayed: true``), a different body is a 409. Keys are scoped by the API key
that sent them (``flask.g.api_key_id``) and kept forever. Race-safe without
read-then-write: the key is claimed with ``INSERT … ON CONFLICT DO NOTHING``; a
concurrent twin waits on the unique key, finds it taken and replays the stored answer.
Requests refused by validation (400/401/422) store nothing, as at Stripe.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from flask import g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.models import IdempotencyKey, utcnow
from ledger.statements import insert_ignore
from webhook_receiver.errors import ApiError

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # printable ASCII, no spaces; Stripe allows 255
_KEY = re.compile(KEY_PATTERN)


def request_key() -> str | None:
    """The request's ``Idempotency-Key``, or None. 400 ``invalid_idempotency_key`` when
    it is empty, longer than 255 or not printable ASCII."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not _KEY.match(key):
        raise ApiError(400, "invalid_idempotency_key",
                       f"{HEADER} must be 1-255 printable ASCII characters without spaces")
    return key


def body_hash(body: dict[str, Any]) -> str:
    """SHA-256 (hex) of ``body`` as canonical JSON: key order and spacing do not matter."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]


def claim(s: Session, key: str, request_hash: str, answer: Answer,
          job_id: str | None, conflict_code: str = "idempotency_key_reused") -> Answer | None:
    """Store ``answer`` as the key's first answer, in the caller's transaction. None if
    this request is the first (the caller goes on and commits its work); else the stored
    answer to replay (the caller must store nothing else). Raises 409 ``conflict_code``
    when the key came with a different body."""
    scope = str(g.api_key_id)  # set by auth.require_api_key, which every caller sits behind
    taken = insert_ignore(s, IdempotencyKey, scope=scope, key=key, request_hash=request_hash,
                          status_code=answer.status, response=json.dumps(answer.body),
                          job_id=job_id, created_at=utcnow()) is None
    if not taken:
        return None
    first = s.execute(select(IdempotencyKey.request_hash, IdempotencyKey.status_code,
                             IdempotencyKey.response)
                      .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)).one()
    if first.request_hash != request_hash:
        raise ApiError(409, conflict_code,
                       f"{HEADER} {key!r} was already used with a different request body; "
                       "use a new key for a new request")
    return Answer(first.status_code, json.loads(first.response))


def first_answer(s: Session, key: str, request_hash: str,
                 conflict_code: str = "idempotency_key_reused") -> Answer | None:
    """The stored first answer to ``key`` (scope: the calling API key), or None; read
    only. Raises 409 ``conflict_code`` when it was stored for another body."""
    first = s.execute(select(IdempotencyKey.request_hash, IdempotencyKey.status_code,
                             IdempotencyKey.response)
                      .where(IdempotencyKey.scope == str(g.api_key_id), IdempotencyKey.key == key)).first()
    if first is None:
        return None
    if first.request_hash != request_hash:
        raise ApiError(409, conflict_code,
                       f"{HEADER} was already used with a different request body; "
                       "use a new key for a new request")
    return Answer(first.status_code, json.loads(first.response))


def replayed(answer: Answer) -> ResponseReturnValue:
    """The stored first answer, sent again with ``Idempotent-Replayed: true``."""
    response = jsonify(answer.body)
    response.headers[REPLAYED_HEADER] = "true"
    return response, answer.status
