"""``gpubill report margins``: revenue against RunPod cost, as a table and a chart."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from gpubill.commands import Group, ledger_sessions, table


@click.group(cls=Group)
def report() -> None:
    """Reports over the ledger."""


@report.command("margins")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="Jobs finished on or after this UTC date/time.")
@click.option("--by", "group", type=click.Choice(["type", "gpu", "day"]), default="type",
              show_default=True)
@click.option("--png", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Also draw revenue and cost per group into this PNG file.")
def margins(since: datetime | None, group: str, png: Path | None) -> None:
    """Jobs, GPU-seconds, credits charged, revenue USD (1 credit = $0.01), RunPod cost
    USD and margin % per job type, GPU or day, with a total row. Two cost bases:
    ``runpod_cost_usd`` is executionTime (what users paid for); ``runpod_billed_usd`` is
    RunPod's bill (cold-start share of delayTime + executionTime, per second rounded up)."""
    from ledger.db import transaction
    from ledger.margins import margins as compute

    with transaction(ledger_sessions()) as s:
        rows = compute(s, by=group, since=since)
    click.echo(table([(r.key, str(r.jobs), f"{r.gpu_seconds:.3f}", str(r.credits),
                       f"{r.revenue_usd:.2f}", f"{r.runpod_cost_usd:.6f}",
                       "-" if r.margin_pct is None else f"{r.margin_pct}",
                       f"{r.runpod_billed_usd:.6f}",
                       "-" if r.billed_margin_pct is None else f"{r.billed_margin_pct}")
                      for r in rows],
                     (group, "jobs", "gpu_seconds", "credits", "revenue_usd", "runpod_cost_usd",
                      "margin_%", "runpod_billed_usd", "billed_margin_%")))
    if png is not None:
        _chart(rows[:-1], group, png)
        click.echo(f"chart written to {png}")


def _chart(rows: list, group: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    keys = [r.key for r in rows]
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 1.2), 4))
    ax.bar([x - 0.2 for x in xs], [float(r.revenue_usd) for r in rows], 0.4, label="revenue USD")
    ax.bar([x + 0.2 for x in xs], [float(r.runpod_cost_usd) for r in rows], 0.4, label="RunPod cost USD")
    for x, r in zip(xs, rows, strict=True):
        if r.margin_pct is not None:
            ax.annotate(f"{r.margin_pct}%", (x, float(max(r.revenue_usd, r.runpod_cost_usd))),
                        ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), keys, rotation=30 if group == "day" else 0)
    ax.set_ylabel("USD")
    ax.set_title(f"GPU job margins by {group}")
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    except OSError as err:
        raise click.FileError(str(path), str(err)) from None
    finally:
        plt.close(fig)
