"""The Alembic revisions build exactly the schema the models describe."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, MetaData, insert, inspect, select
from sqlalchemy.exc import IntegrityError

from ledger.db import make_engine
from ledger.migrate import alembic_config, at_head, upgrade
from ledger.models import SYSTEM_ACCOUNTS, Account, Base
from tests.databases import empty_database

pytestmark = pytest.mark.integration


def test_migrations_match_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            system = set(conn.scalars(select(Account.id).where(Account.kind == "system")))
    finally:
        engine.dispose()
    assert diff == [], diff
    assert system == set(SYSTEM_ACCOUNTS)
    assert at_head(db_url)


# Rows as revision 0008 stores them: one of each table 0009 rewrites, in every status a
# CHECK now constrains, linked as production links them (a stray references its job).
NOW = datetime(2026, 12, 6, 12, 0, 0)
JOB = {"user_id": "u1", "type": "export", "params": "{}", "input": '{"x": 1}',
       "ratecard_version": "v1", "endpoint_id": "ep", "gpu": "A100",
       "estimated_gpu_seconds": Decimal("12.500"), "hold_credits": 400, "max_gpu_seconds": 60,
       "credits_per_gpu_second": Decimal("2.500000"), "min_charge": 5,
       "gpu_usd_per_second": Decimal("0.00076000"), "dispatch_attempts": 1, "flagged": False,
       "created_at": NOW, "updated_at": NOW, "cancel_policy": "charge_execution",
       "status_polls": 3, "next_poll_at": NOW, "republishes": 2, "republish_at": NOW}
ROWS_0008: dict[str, list[dict[str, Any]]] = {
    "accounts": [{"id": "wallet:u1", "kind": "wallet", "created_at": NOW}],
    "wallets": [{"user_id": "u1", "account_id": "wallet:u1", "balance": 1000, "held": 400,
                 "status": "active", "created_at": NOW, "updated_at": NOW}],
    "holds": [{"id": 7, "op_key": "job:j1:hold", "user_id": "u1", "amount": 400, "status": "open",
               "captured": 0, "job_id": "j1", "expires_at": NOW, "created_at": NOW}],
    "jobs": [{**JOB, "id": f"j{n}", "status": status, "webhook_token": f"tok{n}",
              "hold_id": 7 if n == 1 else None, "stop_reason": reason, "runpod_job_id": f"rp{n}",
              "charge": 12 if status == "completed" else None}
             for n, (status, reason) in enumerate(
                 [("in_progress", "expire"), ("completed", None), ("cancelled", "cancel"),
                  ("requested", None), ("lost", None)], start=1)],
    "runpod_jobs": [{"id": rid, "job_id": "j1", "endpoint_id": "ep", "role": role, "state": state,
                     "recorded_at": NOW, "republishes": 1} for rid, role, state in
                    [("rp1", "billed", "open"), ("rp1b", "stray", "settled")]],
    "stripe_events": [{"id": f"evt_{status}", "type": "checkout.session.completed", "livemode": False,
                       "payload": "{}", "status": status, "attempts": 1, "received_at": NOW,
                       "republishes": 4} for status in ("received", "processed", "wrong_mode")],
    "topups": [{"id": 1, "checkout_session_id": "cs_1", "user_id": "u1", "pack": "small",
                "credits": 1000, "amount_total": 1000, "currency": "usd", "status": "credited",
                "created_at": NOW}],
    "stripe_reversals": [{"id": "re_1", "kind": "refund", "topup_id": 1, "amount": 100,
                          "status": "active", "clawed": 100, "created_at": NOW, "updated_at": NOW}],
    "notifications": [{"id": "evt_n1", "job_id": "j2", "type": "job.completed", "payload": "{}",
                       "status": "sent", "attempts": 1, "created_at": NOW, "next_attempt_at": NOW}],
}


def _rows(url: str) -> dict[str, list[dict[str, Any]]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            meta = MetaData()
            meta.reflect(conn, only=list(ROWS_0008))
            return {name: [dict(r._mapping) for r in conn.execute(
                        select(meta.tables[name]).order_by(*meta.tables[name].primary_key.columns))]
                    for name in ROWS_0008}
    finally:
        engine.dispose()


def _insert(url: str, rows: dict[str, list[dict[str, Any]]]) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            meta = MetaData()
            meta.reflect(conn, only=list(rows))
            for name, values in rows.items():
                conn.execute(insert(meta.tables[name]), values)
    finally:
        engine.dispose()


def _checks(url: str) -> dict[str, set[str]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            found = inspect(conn)
            return {t: {c["name"] for c in found.get_check_constraints(t)} for t in ROWS_0008}
    finally:
        engine.dispose()


BAD_JOB = {**JOB, "id": "jbad", "status": "finished", "webhook_token": "tokbad"}


def test_0009_keeps_rows_adds_generated_checks_and_downgrades(tmp_path: Path) -> None:
    model_checks = {t: {c.name for c in Base.metadata.tables[t].constraints
                        if isinstance(c, CheckConstraint)} for t in ROWS_0008}
    with empty_database(tmp_path, "mig") as url:
        upgrade(url, "0008")
        _insert(url, ROWS_0008)
        before = _rows(url)
        assert before["jobs"][0]["status_polls"] == 3  # what we wrote is what 0008 holds

        upgrade(url)
        assert _rows(url) == before  # no row lost or changed
        assert _checks(url) == model_checks  # each generated CHECK exists, names as the models'
        with pytest.raises(IntegrityError):
            _insert(url, {"jobs": [BAD_JOB]})
        with pytest.raises(IntegrityError):
            _insert(url, {"stripe_events": [{**ROWS_0008["stripe_events"][0], "id": "evt_bad",
                                             "status": "done"}]})

        command.downgrade(alembic_config(url), "0008")
        assert _rows(url) == before
        assert all("_known" not in name for names in _checks(url).values() for name in names
                   if not name.startswith("ck_holds"))
        _insert(url, {"jobs": [BAD_JOB]})  # 0008 had no CHECK on jobs.status
