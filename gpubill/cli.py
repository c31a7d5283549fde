"""The ``gpubill`` command line (click)."""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click

from base.settings import get_settings
from gpubill import commands as _commands
from gpubill.commands import (
    events as _events,
    jobs as _jobs,
    keys as _keys,
    reconcile as _reconcile,
    report as _report,
    wallet as _wallet,
)
from gpubill.commands.emulate_stripe import emulate_stripe as _emulate_stripe

try:
    __version__ = version("gpubill")
except PackageNotFoundError:  # running from a tree that was never installed
    __version__ = "0+unknown"

# stack.json keys → the variables other commands need to reach the running stack.
_FROM_STACK = {"broker_url": "GPUBILL_BROKER_URL", "stripe_api_base": "GPUBILL_STRIPE_API_BASE",
               "runpod_base_url": "GPUBILL_RUNPOD_BASE_URL", "database_url": "GPUBILL_DATABASE_URL"}


def use_running_stack() -> dict[str, str]:
    """Fill the variables the environment does not set from the stack ``gpubill up``
    recorded in ``{GPUBILL_DATA_DIR}/stack.json`` (if its launcher is alive); returns
    what was filled. The environment always wins."""
    from gpubill.supervision import read_state

    state = read_state(get_settings().data_dir)
    filled = {var: str(state[key]) for key, var in _FROM_STACK.items()
              if state and state.get(key) and not os.environ.get(var)}
    if filled:
        os.environ.update(filled)
        get_settings.cache_clear()
    return filled


@click.group()
@click.version_option(__version__, "--version", "-V", package_name="gpubill", prog_name="gpubill")
@click.pass_context
def main(ctx: click.Context) -> None:
    """gpubill: billing worker for GPU export jobs (Stripe credits, RunPod GPU-seconds).

    Commands other than ``up`` and ``demo`` find a running ``gpubill up`` (broker,
    stand-ins, database) through ``{GPUBILL_DATA_DIR}/stack.json`` when the
    environment does not name them."""
    if ctx.invoked_subcommand not in ("up", "demo", "emulate"):
        use_running_stack()


@main.group(cls=_commands.Group)
def db() -> None:
    """Ledger database."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply Alembic migrations up to head."""
    from ledger.migrate import upgrade

    upgrade(get_settings().sqlalchemy_url)
    click.echo("database at head")


def _alembic():
    from ledger.migrate import alembic_config

    return alembic_config(get_settings().sqlalchemy_url)


@db.command("current")
@click.option("--verbose", "-v", is_flag=True)
def db_current(verbose: bool) -> None:
    """The database's revision (Alembic's ``current``)."""
    from alembic import command

    command.current(_alembic(), verbose=verbose)


@db.command("history")
@click.option("--verbose", "-v", is_flag=True)
def db_history(verbose: bool) -> None:
    """Every revision, newest first (Alembic's ``history``)."""
    from alembic import command

    command.history(_alembic(), verbose=verbose, indicate_current=True)


@db.command("downgrade", context_settings={"ignore_unknown_options": True})
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert to REVISION (``-1``, ``0004``, ``base``; Alembic's ``downgrade``)."""
    from alembic import command

    command.downgrade(_alembic(), revision)
    click.echo(f"database downgraded to {revision}")


@main.command()
@click.option("--emulator/--no-emulator", default=True, help="Start the RunPod and Stripe stand-ins.")
@click.option("--workers", type=click.Choice(["per_queue", "single"]), default="per_queue",
              show_default=True, help="One Celery worker per queue, or one on all queues.")
@click.option("--flower/--no-flower", default=True, help="Start Flower (read-only, basic auth).")
def up(emulator: bool, workers: str, flower: bool) -> None:
    """Run the whole service until Ctrl-C: broker (embedded unless GPUBILL_BROKER_URL),
    receiver, workers, beat, Flower and the stand-ins, on stable ports (GPUBILL_*_PORT).
    A child that exits is started again within about 2 s; every child gets SIGTERM if
    this process dies. Exit 1 with one line if a port is taken or the data directory
    already has a running stack."""
    from gpubill.launcher import Stack
    from gpubill.supervision import StackError

    cfg = get_settings()
    click.echo(f"starting gpubill in {cfg.data_dir.resolve()} …")
    stack = Stack(emulator=emulator, workers=workers, flower=flower, broker_port=cfg.broker_port,
                  progress=click.echo,
                  env={"GPUBILL_RECEIVER_PORT": str(cfg.receiver_port),
                       "GPUBILL_EMULATOR_PORT": str(cfg.emulator_port),
                       "GPUBILL_STRIPE_EMULATOR_PORT": str(cfg.stripe_emulator_port),
                       "GPUBILL_FLOWER_PORT": str(cfg.flower_port)})
    try:
        stack.start()
    except StackError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    except RuntimeError as err:  # a child did not come up; its log is named
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(services_table(stack))
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
        click.echo("stopped")


def services_table(stack) -> str:
    """One table: each service, its address, and how to authenticate (dev values)."""
    from base.settings import DEV_API_KEY, DEV_FLOWER_BASIC_AUTH, DEV_METRICS_TOKEN

    cfg = stack.settings
    state = stack.state()

    def cred(value: str, dev: str, var: str) -> str:
        return f"{var}={value}" if value == dev else f"{var} (set)"

    rows = [("receiver", stack.receiver_url,
             "Bearer " + cred(cfg.api_key_values()[0], DEV_API_KEY, "GPUBILL_API_KEYS")),
            ("api docs", f"{stack.receiver_url}/docs", ""),
            ("metrics", state["metrics_url"],
             "Bearer " + cred(cfg.metrics_token.get_secret_value(), DEV_METRICS_TOKEN, "GPUBILL_METRICS_TOKEN")),
            ("broker", cfg.broker_url, "embedded" if stack.broker else "GPUBILL_BROKER_URL")]
    if "runpod_base_url" in state:
        rows.append(("runpod", state["runpod_base_url"], "stand-in"))
    rows.append(("stripe", cfg.stripe_api_base,
                 "stand-in" if "stripe_api_base" in state else "GPUBILL_STRIPE_API_BASE"))
    if "flower_url" in state:
        rows.append(("flower", state["flower_url"],
                     "login " + cred(cfg.flower_basic_auth.get_secret_value(), DEV_FLOWER_BASIC_AUTH,
                                     "GPUBILL_FLOWER_BASIC_AUTH")))
    rows += [("database", cfg.sqlalchemy_url, ""), ("logs", str(stack.log_dir), ""),
             ("state", str(Path(state["data_dir"]) / "stack.json"), "read by the other commands")]
    width = max(len(r[1]) for r in rows)
    return "\n".join(f"{name:<9} {url:<{width}}  {note}".rstrip() for name, url, note in rows)


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
main.add_command(_reconcile.reconcile)
main.add_command(_wallet.wallet)
main.add_command(_jobs.jobs)
main.add_command(_report.report)
main.add_command(_keys.keys)
main.add_command(_events.events)


@main.group()
def emulate() -> None:
    """Local stand-ins for outside services (their log lines are gpubill's JSON lines)."""
    from base import logs

    logs.configure()


@emulate.command("runpod")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8010, show_default=True, type=int)
@click.option("--config", "config_path", type=click.Path(exists=True, path_type=Path),
              help="TOML profiles (default: emulators/runpod/profiles.toml).")
def emulate_runpod(host: str, port: int, config_path: Path | None) -> None:
    """Serve RunPod's serverless REST API (/v2/{endpoint}/run, /status, /cancel,
    /health) for any RunPod client pointed at http://HOST:PORT/v2."""
    from emulators.runpod import EmulatorConfig, serve
    from gpubill.stack_argv import EMULATOR_PROFILES

    config = EmulatorConfig.from_toml(config_path or EMULATOR_PROFILES)
    logging.getLogger("gpubill.emulate").info("RunPod stand-in on http://%s:%s/v2", host, port)
    serve(config, host=host, port=port)


emulate.add_command(_emulate_stripe)


if __name__ == "__main__":
    main()
