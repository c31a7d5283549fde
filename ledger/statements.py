"""The ledger hot path's SQL, built once (``ledger.operations`` executes it).

Core tables, not ORM entities: the hot path skips the ORM's DML machinery (about 5×
less CPU per statement) and never touches a session's identity map. Building and
cache-keying a statement per call costs more CPU than executing it, so each statement is
a module constant. Parameters are named ``p_*`` (a bindparam may not share a column's
name in SET / VALUES). PostgreSQL runs the one-statement forms in ``ledger.onestep``.
"""
from __future__ import annotations

from functools import cache
from typing import Any, cast

from sqlalchemy import BindParameter, Table, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ledger.models import Base, Hold, HoldStatus, LedgerTransaction, Posting, Wallet

# (Declarative models type ``__table__`` as a FromClause; these are their Tables.)
W, H = cast(Table, Wallet.__table__), cast(Table, Hold.__table__)
TX, P = cast(Table, LedgerTransaction.__table__), cast(Table, Posting.__table__)


RESERVE = update(W).where(
    W.c.user_id == bindparam("p_user"), W.c.status == "active",
    W.c.balance - W.c.held >= bindparam("p_amount"),
).values(held=W.c.held + bindparam("p_amount"), updated_at=bindparam("p_now"))
UNRESERVE = update(W).where(W.c.user_id == bindparam("p_user")).values(
    held=W.c.held - bindparam("p_amount"))
CHARGE = update(W).where(W.c.user_id == bindparam("p_user")).values(
    balance=W.c.balance - bindparam("p_amount"), held=W.c.held - bindparam("p_held"),
    updated_at=bindparam("p_now"))
FREE = update(W).where(W.c.user_id == bindparam("p_user")).values(
    held=W.c.held - bindparam("p_held"), updated_at=bindparam("p_now"))
END_VALUES: dict[str, BindParameter[Any]] = {"close_key": bindparam("p_key"), "closed_at": bindparam("p_now"),
               "status": bindparam("p_status")}
END_RELEASE = update(H).where(H.c.id == bindparam("p_id"), H.c.status == HoldStatus.OPEN).values(
    **END_VALUES).returning(H.c.user_id, H.c.amount)
END_CAPTURE = update(H).where(
    H.c.id == bindparam("p_id"), H.c.status == HoldStatus.OPEN, H.c.amount >= bindparam("p_amount"),
).values(**END_VALUES, captured=bindparam("p_amount")).returning(H.c.user_id, H.c.amount)
INSERT_TX = insert(TX).values(
    op_key=bindparam("p_key"), kind=bindparam("p_kind"), amount=bindparam("p_amount"),
    user_id=bindparam("p_user"), ref=bindparam("p_ref"), created_at=bindparam("p_now"),
).returning(TX.c.id)
INSERT_POSTINGS = insert(P)
TX_BY_KEY = select(TX).where(TX.c.op_key == bindparam("p_key"))
HOLD_BY_KEY = select(H).where(H.c.op_key == bindparam("p_key"))
HOLD_BY_ID = select(H).where(H.c.id == bindparam("p_id"))


@cache
def insert_ignore_statement(dialect: str, table: Any) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING`` the primary key, for ``table`` on
    ``dialect`` ("postgresql" or "sqlite"), built once (see above); execute it with the
    row's values as parameters keyed by column name."""
    ins = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # RETURNING, not rowcount: psycopg reports -1 for INSERT … ON CONFLICT DO NOTHING.
    return ins(table).on_conflict_do_nothing().returning(*table.primary_key.columns)


def insert_ignore(session: Session, model: type[Base], **values: object) -> Any | None:
    """``INSERT … ON CONFLICT DO NOTHING`` on PostgreSQL and SQLite; returns the new
    row's primary key, or None when a conflicting row already exists."""
    stmt = insert_ignore_statement(session.get_bind().dialect.name, model.__table__)
    return session.connection().execute(stmt, values).scalar_one_or_none()
