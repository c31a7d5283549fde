"""The ``gpubill`` command line (click)."""
from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from gpubill.settings import get_settings


@click.group()
def main() -> None:
    """gpubill: billing worker for GPU export jobs (Stripe credits, RunPod GPU-seconds)."""


@main.group()
def db() -> None:
    """Ledger database."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply Alembic migrations up to head."""
    from ledger.migrate import upgrade

    upgrade(get_settings().sqlalchemy_url)
    click.echo("database at head")


@main.command()
@click.option("--emulator/--no-emulator", default=True, help="Start the RunPod stand-in.")
@click.option("--workers", type=click.Choice(["per_queue", "single"]), default="per_queue",
              show_default=True, help="One Celery worker per queue, or one on all queues.")
@click.option("--flower/--no-flower", default=True, help="Start Flower (read-only, basic auth).")
def up(emulator: bool, workers: str, flower: bool) -> None:
    """Run the whole service until Ctrl-C: broker (embedded unless GPUBILL_BROKER_URL),
    receiver, workers, beat, Flower and the RunPod stand-in. A child that exits is
    started again within about 2 s."""
    from gpubill.launcher import Stack

    cfg = get_settings()
    stack = Stack(emulator=emulator, workers=workers, flower=flower,
                  env={"GPUBILL_RECEIVER_PORT": str(cfg.receiver_port),
                       "GPUBILL_EMULATOR_PORT": str(cfg.emulator_port)}).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    cfg = stack.settings
    click.echo(f"receiver  {stack.receiver_url}")
    click.echo(f"broker    {cfg.broker_url}")
    click.echo(f"database  {cfg.sqlalchemy_url}")
    if emulator:
        click.echo(f"runpod    {cfg.runpod_base_url} (stand-in)")
        click.echo(f"stripe    {cfg.stripe_api_base} (stand-in unless GPUBILL_STRIPE_API_BASE is set)")
    if flower:
        click.echo(f"flower    {stack.flower_url} (read-only, GPUBILL_FLOWER_BASIC_AUTH)")
    click.echo(f"metrics   {stack.receiver_url}/metrics")
    click.echo(f"logs      {stack.log_dir}")
    try:
        while not stop.wait(2):  # a supervisor: start again any child that exited
            try:
                for name in stack.restart_exited():
                    click.echo(f"{name} exited; started again", err=True)
            except RuntimeError as err:  # it exited again while starting; next round
                click.echo(str(err), err=True)
    finally:
        click.echo("stopping…")
        stack.stop()


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("var/demo"),
              show_default=True, help="Fresh data directory for this run (wiped first).")
def demo(data_dir: Path) -> None:
    """Start the service on embedded defaults, run the demo scenario over HTTP, print
    what happened, stop everything. Exit 0 only if every expectation and every ledger
    invariant holds."""
    from gpubill.demo import run_demo

    sys.exit(0 if run_demo(data_dir, click.echo) else 1)


# Operator commands (issue 5), one module per group.
from gpubill.commands import jobs as _jobs  # noqa: E402
from gpubill.commands import keys as _keys  # noqa: E402
from gpubill.commands import reconcile as _reconcile  # noqa: E402
from gpubill.commands import report as _report  # noqa: E402
from gpubill.commands import wallet as _wallet  # noqa: E402

main.add_command(_reconcile.reconcile)
main.add_command(_wallet.wallet)
main.add_command(_jobs.jobs)
main.add_command(_report.report)
main.add_command(_keys.keys)
from gpubill.commands import events as _events  # noqa: E402  (issue 3)

main.add_command(_events.events)


@main.group()
def emulate() -> None:
    """Local stand-ins for outside services."""


@emulate.command("runpod")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8010, show_default=True, type=int)
@click.option("--config", "config_path", type=click.Path(exists=True, path_type=Path),
              help="TOML profiles (default: emulators/runpod/profiles.toml).")
def emulate_runpod(host: str, port: int, config_path: Path | None) -> None:
    """Serve RunPod's serverless REST API (/v2/{endpoint}/run, /status, /cancel,
    /health) for any RunPod client pointed at http://HOST:PORT/v2."""
    from emulators.runpod import EmulatorConfig, serve
    from gpubill.launcher import EMULATOR_PROFILES

    config = EmulatorConfig.from_toml(config_path or EMULATOR_PROFILES)
    click.echo(f"RunPod stand-in on http://{host}:{port}/v2")
    serve(config, host=host, port=port)


from gpubill.commands.emulate_stripe import emulate_stripe as _emulate_stripe  # noqa: E402

emulate.add_command(_emulate_stripe)


if __name__ == "__main__":
    main()
