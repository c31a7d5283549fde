"""``gpubill keys create|list|revoke`` and the receiver accepting stored keys: shown once,
stored as SHA-256 only, working at once, 401 as soon as revoked."""
from __future__ import annotations

import hashlib
import re

import pytest
import requests
from sqlalchemy import select

from ledger.db import transaction
from ledger.models import ApiKey
from tests.gpubill.operator_support import gpubill

pytestmark = pytest.mark.integration

KEY = re.compile(r"^key\s+(gpb_[0-9a-f]{16}_\S{43})$", re.M)
ID = re.compile(r"^id\s+([0-9a-f]{16})$", re.M)


def create(db_url: str, name: str) -> tuple[str, str]:
    result = gpubill(db_url, "keys", "create", name, "--operator", "ops-alice")
    assert result.exit_code == 0, result.output
    return ID.search(result.stdout).group(1), KEY.search(result.stdout).group(1)


def wallet(stack, key: str) -> requests.Response:
    return requests.get(f"{stack.receiver_url}/v1/wallets/keys-user",
                        headers={"Authorization": f"Bearer {key}"}, timeout=10)


def test_create_stores_only_the_hash_and_list_never_shows_it(db_url, sessions) -> None:
    kid, key = create(db_url, "video editor (staging)")
    with transaction(sessions) as s:
        row = s.get(ApiKey, kid)
        assert row.secret_sha256 == hashlib.sha256(key.encode()).hexdigest()
        assert row.name == "video editor (staging)" and row.created_by == "ops-alice"
        assert key not in str([getattr(row, c.key) for c in ApiKey.__table__.columns])
    listed = gpubill(db_url, "keys", "list")
    assert listed.exit_code == 0
    assert kid in listed.output and "video editor (staging)" in listed.output
    assert key.rsplit("_", 1)[1] not in listed.output


def test_a_created_key_works_and_a_revoked_key_gets_401(stack, db_url) -> None:
    kid, key = create(db_url, "app")
    assert wallet(stack, key).status_code == 200
    revoked = gpubill(db_url, "keys", "revoke", kid)
    assert revoked.exit_code == 0 and f"revoked {kid}" in revoked.output
    answer = wallet(stack, key)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"
    listed = gpubill(db_url, "keys", "list", "--active")
    assert kid not in listed.output
    # Revoking twice keeps the first time and still succeeds.
    assert gpubill(db_url, "keys", "revoke", kid).exit_code == 0


def test_wrong_secret_unknown_id_and_garbage_get_401(stack, db_url) -> None:
    kid, key = create(db_url, "app")
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    unknown = f"gpb_{'0' * 16}_{key.rsplit('_', 1)[1]}"
    for bad in (forged, unknown, "gpb_nonsense", "", key + "x"):
        assert wallet(stack, bad).status_code == 401, bad


def test_the_configured_key_still_works(stack) -> None:
    assert wallet(stack, stack.settings.api_key_values()[0]).status_code == 200


def test_bad_input_is_a_clear_error(db_url) -> None:
    unknown = gpubill(db_url, "keys", "revoke", "ffffffffffffffff")
    assert unknown.exit_code == 1 and "no API key ffffffffffffffff" in unknown.output
    empty = gpubill(db_url, "keys", "create", "  ")
    assert empty.exit_code == 2 and "name must be 1 to 100 characters" in empty.output


def test_keys_are_distinct(db_url, sessions) -> None:
    made = {create(db_url, f"k{i}") for i in range(3)}
    assert len({k for _, k in made}) == 3
    with transaction(sessions) as s:
        ids = set(s.scalars(select(ApiKey.id)))
    assert {kid for kid, _ in made} <= ids


def test_the_request_knows_which_key_it_used(db_url) -> None:
    """``g.api_key_id`` scopes per-client state (Idempotency-Keys): "settings" for the
    configured key, the key's id for a stored one."""
    from flask import g

    from base.settings import Settings
    from webhook_receiver import create_app
    from webhook_receiver.auth import require_api_key

    cfg = Settings(database_url=db_url, broker_url="redis://127.0.0.1:1/0")
    app = create_app(cfg)
    app.add_url_rule("/whoami", "whoami", require_api_key(lambda: {"key": g.api_key_id}))
    kid, key = create(db_url, "app")
    client = app.test_client()
    for bearer, expected in ((key, kid), (cfg.api_key_values()[0], "settings")):
        answer = client.get("/whoami", headers={"Authorization": f"Bearer {bearer}"})
        assert answer.status_code == 200 and answer.json == {"key": expected}
    assert client.get("/whoami").status_code == 401
