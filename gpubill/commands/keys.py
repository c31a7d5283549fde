"""``gpubill keys create|list|revoke``: the app's API keys (stored hashed, shown once)."""
from __future__ import annotations

import sys
from datetime import datetime

import click

from gpubill.commands import Group, ledger_sessions, table, whoami


def _ts(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%SZ") if at else "-"


@click.group(cls=Group)
def keys() -> None:
    """API keys for the app (Authorization: Bearer <key>)."""


@keys.command("create")
@click.argument("name")
@click.option("--operator", default=whoami, show_default="current user",
              help="Recorded as the key's creator.")
def create(name: str, operator: str) -> None:
    """Create a key called NAME and print it — once: only its SHA-256 is stored."""
    from ledger import api_keys
    from ledger.db import transaction

    try:
        with transaction(ledger_sessions()) as s:
            new = api_keys.create(s, name=name, created_by=operator)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="NAME") from None
    click.echo(f"id    {new.id}")
    click.echo(f"name  {new.name}")
    click.echo(f"key   {new.key}")
    click.echo("Store the key now: it cannot be shown again.", err=True)


@keys.command("list")
@click.option("--active", is_flag=True, help="Only keys not revoked.")
def list_(active: bool) -> None:
    """Every key: id, name, creator, created, revoked (never a secret)."""
    from ledger import api_keys
    from ledger.db import transaction

    with transaction(ledger_sessions()) as s:
        rows = [(k.id, k.name, k.created_by, _ts(k.created_at), _ts(k.revoked_at))
                for k in api_keys.list_keys(s, include_revoked=not active)]
    click.echo(table(rows, ("id", "name", "created by", "created", "revoked")))


@keys.command("revoke")
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke key KEY_ID at once: requests with it get 401 from now on."""
    from ledger import api_keys
    from ledger.db import transaction

    try:
        with transaction(ledger_sessions()) as s:
            row = api_keys.revoke(s, key_id)
    except api_keys.UnknownKey:
        click.echo(f"error: no API key {key_id}", err=True)
        sys.exit(1)
    click.echo(f"revoked {row.id} ({row.name}) at {_ts(row.revoked_at)}")
