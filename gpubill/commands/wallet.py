"""``gpubill wallet show|entries|adjust``: read a wallet, fix it by an audited adjustment."""
from __future__ import annotations

import uuid

import click

from gpubill.commands import Group, fail, ledger_sessions, table, whoami


@click.group(cls=Group)
def wallet() -> None:
    """Wallets: balance, entries, adjustments (credits)."""


@wallet.command("show")
@click.argument("user")
def show(user: str) -> None:
    """USER's balance, held and available credits, status and open holds."""
    from sqlalchemy import select

    from ledger.db import transaction
    from ledger.models import Hold, HoldStatus, Wallet

    with transaction(ledger_sessions()) as s:
        w = s.get(Wallet, user)
        if w is None:
            fail(f"no wallet for user {user}")
        holds = s.scalars(select(Hold).where(Hold.user_id == user, Hold.status == HoldStatus.OPEN)
                          .order_by(Hold.id)).all()
    click.echo(f"user       {w.user_id}")
    click.echo(f"status     {w.status}")
    click.echo(f"balance    {w.balance} credits")
    click.echo(f"held       {w.held} credits")
    click.echo(f"available  {w.available} credits")
    click.echo(f"open holds {len(holds)}")
    if holds:
        click.echo(table([(str(h.id), str(h.amount), h.job_id or "-", h.expires_at.isoformat() + "Z")
                          for h in holds], ("hold", "credits", "job", "expires")))


@wallet.command("entries")
@click.argument("user")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 200))
@click.option("--cursor", help="next_cursor printed by the previous page.")
def entries(user: str, limit: int, cursor: str | None) -> None:
    """USER's ledger entries, newest first (credits, signed as they affect the wallet)."""
    from ledger import entries as ledger_entries
    from ledger.db import transaction

    try:
        with transaction(ledger_sessions()) as s:
            page = ledger_entries.page(s, user, cursor=cursor, limit=limit)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--cursor") from None
    click.echo(table([(e.created_at.isoformat(timespec="seconds") + "Z", e.kind, str(e.amount),
                       e.ref or "-", e.op_key, e.id) for e in page.entries],
                     ("at", "kind", "credits", "ref", "operation key", "entry")))
    if page.next_cursor:
        click.echo(f"next cursor: {page.next_cursor}")


# Negative AMOUNTs look like options to click: let them through as arguments.
@wallet.command("adjust", context_settings={"ignore_unknown_options": True})
@click.argument("user")
@click.argument("amount", type=int)
@click.option("--reason", required=True, help="Why (kept in the audit row).")
@click.option("--operator", default=whoami, show_default="current user",
              help="Who (kept in the audit row).")
@click.option("--key", help="Operation key for an idempotent retry (default: a fresh one).")
@click.option("--allow-debt", is_flag=True, help="Let a debit take available below 0.")
def adjust(user: str, amount: int, reason: str, operator: str, key: str | None,
           allow_debt: bool) -> None:
    """Credit (AMOUNT > 0) or debit (AMOUNT < 0) USER's wallet by AMOUNT credits against
    the adjustments account, audited with operator and reason. Re-running with the same
    --key applies it once."""
    from base.ids import USER_ID_PATTERN, is_user_id
    from ledger.adjustments import adjust as ledger_adjust
    from ledger.db import transaction
    from ledger.errors import IdempotencyConflict, InsufficientFunds

    if not is_user_id(user):
        raise click.BadParameter(f"must match {USER_ID_PATTERN}", param_hint="USER")
    if amount == 0:
        raise click.BadParameter("must not be 0", param_hint="AMOUNT")
    if not reason.strip():
        raise click.BadParameter("must not be empty", param_hint="--reason")
    op_key = f"adjust:{key or uuid.uuid4().hex}"
    if len(op_key) > 200:
        raise click.BadParameter("at most 190 characters", param_hint="--key")
    try:
        with transaction(ledger_sessions()) as s:
            done = ledger_adjust(s, user_id=user, amount=amount, reason=reason, operator=operator,
                                 op_key=op_key, allow_debt=allow_debt)
    except InsufficientFunds:
        fail(f"wallet {user} has less than {-amount} credits available; "
             "use --allow-debt to take it below 0")
    except (IdempotencyConflict, ValueError) as err:
        fail(str(err))
    verb = "already applied" if done.replayed else "applied"
    click.echo(f"{verb}: {done.amount:+d} credits to {user} (transaction {done.transaction_id}, "
               f"key {done.op_key}, by {done.operator}: {done.reason})")
