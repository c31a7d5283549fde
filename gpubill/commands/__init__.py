"""Operator command groups of the ``gpubill`` CLI, one module per group, each registered
in ``gpubill.cli`` with ``main.add_command``."""
from __future__ import annotations

import getpass
import sys
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, NoReturn

import click
from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from base.settings import get_settings


def fail(message: str) -> NoReturn:
    """Print ``error: message`` to stderr and exit 1."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def ledger_sessions() -> sessionmaker[Session]:
    """Sessions on the configured ledger (``GPUBILL_DATABASE_URL``)."""
    return _sessions(get_settings().sqlalchemy_url)


@lru_cache(maxsize=4)
def _sessions(url: str) -> sessionmaker[Session]:
    from ledger.db import make_engine, make_sessionmaker

    return make_sessionmaker(make_engine(url))


def table(rows: Sequence[tuple[str, ...]], headers: tuple[str, ...]) -> str:
    """A plain fixed-width table: first column left-aligned, the others right-aligned."""
    cells = [headers, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=False))).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])


class _DatabaseErrors:
    """Turn a database failure into a one-line error (exit 1) instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]  # a mixin: the click class after it has invoke()
        except DBAPIError as err:
            url = make_url(get_settings().sqlalchemy_url).render_as_string(hide_password=True)
            first = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
            raise click.ClickException(
                f"database {url}: {first} (is it reachable and migrated? `gpubill db upgrade`)"
            ) from None


class Group(_DatabaseErrors, click.Group):
    """A command group whose commands report database failures as clear errors."""


class Command(_DatabaseErrors, click.Command):
    """A command that reports database failures as a clear error."""


def whoami() -> str:
    """The operator's login name (recorded in audit rows); "unknown" if the system has none."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (some containers)
        return "unknown"
