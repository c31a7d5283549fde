"""``gpubill reconcile``: every ledger invariant and Stripe-side check, a summary table,
exit 1 on any violation."""
from __future__ import annotations

import sys

import click

from gpubill.commands import Command, ledger_sessions, table

# Below this many subject rows a run takes moments: no progress bar.
PROGRESS_FROM = 20_000


@click.command(cls=Command)
@click.option("--progress/--no-progress", default=None,
              help=f"Progress bar on stderr (default: when over {PROGRESS_FROM:,} rows).")
@click.option("--record/--no-record", default=True, show_default=True,
              help="Record the run in reconcile_runs.")
@click.option("--show", default=50, show_default=True, type=click.IntRange(min=0),
              help="Violations to list.")
def reconcile(progress: bool | None, record: bool, show: int) -> None:
    """Check every invariant of docs/architecture.md over the whole ledger and Stripe-side
    consistency (paid sessions credited once, refunds clawed back once). Prints one row
    per check (rows examined, violations); exit 1 on any violation."""
    from ledger.reconcile import run_checks, snapshot, work
    from ledger.reconcile_runs import record as record_run

    factory = ledger_sessions()
    with snapshot(factory) as s:
        total = work(s)
    shown = progress if progress is not None else total >= PROGRESS_FROM
    with click.progressbar(length=total, label="reconciling", file=sys.stderr,
                           hidden=not shown) as bar:
        if record:
            outcome = record_run(factory, trigger="cli", progress=bar.update)
            assert outcome is not None  # no run key: always runs
            run_id, report = outcome
        else:
            run_id = None
            with snapshot(factory) as s:
                report = run_checks(s, bar.update)
    rows = [(r.name, "-" if r.examined is None else str(r.examined), str(len(r.violations)))
            for r in report.results]
    click.echo(table(rows, ("check", "examined", "violations")))
    found = report.violations
    for v in found[:show]:
        click.echo(str(v))
    if len(found) > show:
        click.echo(f"… and {len(found) - show} more")
    click.echo((f"run {run_id}: " if run_id else "") + f"{len(found)} violation(s)")
    sys.exit(1 if found else 0)
