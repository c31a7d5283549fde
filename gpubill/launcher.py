"""Runs the whole service as child processes, and stops it without leaving orphans.

``Stack`` starts, in order: the embedded broker (unless ``GPUBILL_BROKER_URL`` is set),
the database migrations, the RunPod stand-in (optional), the receiver under gunicorn,
Celery workers — one on every queue (``workers="single"``) or one per queue
(``workers="per_queue"``, the production topology) — the single beat (RedBeat lock on a
Redis-protocol broker) and Flower (optional). Each child runs in its own process
group, so stopping it (SIGTERM, then SIGKILL after a grace period) also stops its
children (gunicorn and prefork workers), and gets SIGTERM if the launcher dies, even by
SIGKILL (``PR_SET_PDEATHSIG``, ``gpubill.supervision``). Before anything starts, the
data directory is locked (one stack per directory: a second one never touches the
first's files) and every port is checked free (``StackError``, one line). What is
running is recorded in ``{data_dir}/stack.json``. Logs go to ``{data_dir}/logs/{name}.log``.
Each child's command line: ``gpubill.stack_argv``; its process: ``gpubill.child``; its
readiness probe: ``gpubill.readiness``.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from base.settings import Settings
from gpubill import readiness, stack_argv, supervision
from gpubill.broker import EmbeddedBroker, free_port
from gpubill.child import Child
from ledger.migrate import upgrade

# How long children get to stop on SIGTERM (all at once) before SIGKILL: 4 s, so that
# with the broker's stop and the launcher's own exit a Ctrl-C ends within 5 s (a Celery
# worker's warm shutdown on a loaded machine took the whole former 5 s, and the stop 6.5 s).
STOP_GRACE_S = 4.0
# Flower keeps no state (no --persistent), but on SIGTERM its exit joins the threads of
# its in-flight Celery inspect broadcasts (flower/app.py ``executor.shutdown(wait=False)``,
# then the interpreter joins them): 3-5 s measured, most of a stop of the defaults. It
# gets this long before SIGKILL, which loses nothing.
FLOWER_GRACE_S = 1.0


@dataclass
class Stack:
    """The service on this machine. ``env`` overrides ``GPUBILL_*`` for every child."""

    env: dict[str, str] = field(default_factory=dict)
    emulator: bool = True
    worker_concurrency: int = 2
    beat: bool = True
    workers: str = "single"  # "single": one worker on all queues; "per_queue": one each
    flower: bool = False
    broker_port: int | None = None  # the embedded broker's; None: a free one
    progress: Callable[[str], None] | None = None  # one line per service as it is ready
    children: list[Child] = field(default_factory=list)
    broker: EmbeddedBroker | None = None
    _lock: IO[str] | None = None

    def __post_init__(self) -> None:
        self.env = {**{k: v for k, v in os.environ.items() if k.startswith("GPUBILL_")}, **self.env}
        self.env.setdefault("GPUBILL_RECEIVER_PORT", str(free_port()))
        port = int(self.env["GPUBILL_RECEIVER_PORT"])
        self.env.setdefault("GPUBILL_PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
        if self.emulator:
            self.env.setdefault("GPUBILL_EMULATOR_PORT", str(free_port()))
            self.env.setdefault("GPUBILL_RUNPOD_BASE_URL",
                                f"http://127.0.0.1:{self.env['GPUBILL_EMULATOR_PORT']}/v2")
            # The Stripe stand-in serves the Stripe API unless GPUBILL_STRIPE_API_BASE
            # points elsewhere (then it is not started).
            self.env.setdefault("GPUBILL_STRIPE_EMULATOR_PORT", str(free_port()))
            self.env.setdefault("GPUBILL_STRIPE_API_BASE",
                                f"http://127.0.0.1:{self.env['GPUBILL_STRIPE_EMULATOR_PORT']}")

    @property
    def settings(self) -> Settings:
        # Strings from the environment: pydantic parses each into its field's type.
        values: dict[str, Any] = {k.removeprefix("GPUBILL_").lower(): v for k, v in self.env.items()}
        return Settings(**values)

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.env['GPUBILL_RECEIVER_PORT']}"

    @property
    def log_dir(self) -> Path:
        return Path(self.env.get("GPUBILL_DATA_DIR", "var")) / "logs"

    # -- start -------------------------------------------------------------------------
    def start(self, timeout_s: float = 60) -> Stack:
        try:
            self._start(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def planned_ports(self) -> dict[str, int]:
        """The TCP port of each service this stack will start."""
        cfg = self.settings
        ports = {"receiver": cfg.receiver_port}
        if not self.env.get("GPUBILL_BROKER_URL") and self.broker_port:
            ports["broker"] = self.broker_port
        ports.update({name: port for name, (port, _, _) in self._optional(cfg).items()})
        return ports

    def _optional(self, cfg: Settings) -> dict[str, tuple[int, str, str]]:
        """Optional services: name → (port, stack.json key, URL)."""
        found: dict[str, tuple[int, str, str]] = {}
        if self.emulator:
            found["runpod-emulator"] = (cfg.emulator_port, "runpod_base_url", cfg.runpod_base_url)
            if self._stripe_standin(cfg):
                found["stripe-emulator"] = (cfg.stripe_emulator_port, "stripe_api_base", cfg.stripe_api_base)
        if self.flower:
            found["flower"] = (cfg.flower_port, "flower_url", self.flower_url)
        return found

    def _stripe_standin(self, cfg: Settings) -> bool:
        return self.emulator and cfg.stripe_api_base.rstrip("/") == f"http://127.0.0.1:{cfg.stripe_emulator_port}"

    def _say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)

    def _start(self, timeout_s: float) -> None:
        data_dir = Path(self.env.get("GPUBILL_DATA_DIR", "var")).resolve()
        self.env["GPUBILL_DATA_DIR"] = str(data_dir)
        # Nothing is written or started before these two checks pass.
        self._lock = supervision.lock_data_dir(data_dir)
        supervision.check_ports_free(self.planned_ports(), self.settings.receiver_host)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        if not self.env.get("GPUBILL_BROKER_URL"):
            self.broker = EmbeddedBroker(data_dir / "broker", port=self.broker_port).start()
            self.env["GPUBILL_BROKER_URL"] = self.broker.url
            self._say(f"  broker             ready  {time.monotonic() - started:5.1f} s")
        upgrade(self.settings.sqlalchemy_url)
        self._say(f"  migrations         done   {time.monotonic() - started:5.1f} s")
        groups = self._spawn_services(self.settings, data_dir)
        deadline = time.monotonic() + timeout_s
        for name in ("receiver", "runpod-emulator", "stripe-emulator", *groups, "flower"):
            if any(c.name == name for c in self.children):
                self._wait(deadline, name)
                self._say(f"  {name:<18} ready  {time.monotonic() - started:5.1f} s")
        self.write_state()

    def _spawn_services(self, cfg: Settings, data_dir: Path) -> dict[str, tuple[str, ...]]:
        """Start every child (stand-ins, receiver, workers, beat, Flower) without waiting;
        returns the worker groups (name → queues)."""
        # One prometheus multiprocess directory for the receiver and workers on this host,
        # emptied at start as prometheus_client requires (see webhook_receiver.metrics).
        metrics_dir = data_dir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        observed = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        py = sys.executable
        if self.emulator:
            self._spawn("runpod-emulator", stack_argv.runpod_emulator_argv(py, cfg))
        if self._stripe_standin(cfg):
            self._spawn("stripe-emulator", stack_argv.stripe_emulator_argv(py, cfg, self.receiver_url))
        self._spawn("receiver", stack_argv.receiver_argv(py), observed)
        groups = stack_argv.worker_groups(self.workers)
        for name, qs in groups.items():
            self._spawn(name, stack_argv.worker_argv(py, cfg, name, qs, self.worker_concurrency),
                        observed)
        if self.beat:
            self._spawn("beat", stack_argv.beat_argv(py, cfg))
        if self.flower:
            self._spawn("flower", stack_argv.flower_argv(py, cfg), stack_argv.flower_env(cfg))
        return groups

    def state(self) -> dict[str, Any]:
        """What is running: URLs, ports and PIDs (``{data_dir}/stack.json``)."""
        cfg = self.settings
        state: dict[str, Any] = {
            "pid": os.getpid(), "data_dir": self.env["GPUBILL_DATA_DIR"],
            "receiver_url": self.receiver_url, "broker_url": cfg.broker_url,
            "database_url": cfg.sqlalchemy_url, "log_dir": str(self.log_dir),
            "metrics_url": f"{self.receiver_url}/metrics",
            "children": {c.name: c.proc.pid for c in self.children},
        }
        if self.broker is not None and self.broker.proc is not None:
            state["children"]["broker"] = self.broker.proc.pid
        state.update({key: url for _, key, url in self._optional(cfg).values()})
        return state

    def write_state(self) -> None:
        supervision.write_state(Path(self.env["GPUBILL_DATA_DIR"]), self.state())

    def _ready(self, name: str) -> bool:
        return readiness.probe(name, self.settings, self.child(name).argv)

    @property
    def flower_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.flower_port}"

    def _spawn(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
        self.children.append(Child.spawn(name, argv, self.env, self.log_dir, extra_env))

    def _wait(self, deadline: float, name: str) -> None:
        while True:
            dead = [c.name for c in self.children if not c.alive()]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited; see {self.log_dir}")
            try:
                if self._ready(name):
                    return
            except Exception:  # noqa: BLE001 - not up yet (the deadline bounds the wait)
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready in time; see {self.log_dir / (name + '.log')}")
            time.sleep(0.2)

    # -- control -----------------------------------------------------------------------
    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def restart(self, name: str, grace_s: float = 15) -> None:
        """Stop child ``name`` and start it again with the same command (tests use this
        to make the RunPod stand-in forget its jobs, as RunPod does after 30 min)."""
        old = self.child(name)
        old.stop(grace_s)
        self.children.remove(old)
        self._spawn(name, old.argv, old.extra_env)
        self._wait(time.monotonic() + 60, name)

    def restart_exited(self) -> list[str]:
        """Start again, with the same commands, every child that has exited (as a
        supervisor would), then wait until each is ready; returns their names. Children
        are started together: waiting on one fails while another is still down."""
        dead = [c for c in self.children if not c.alive()]
        for child in dead:
            child.stop(0)  # what is left of its process group; closes its log
            self.children.remove(child)
            self._spawn(child.name, child.argv, child.extra_env)
        deadline = time.monotonic() + 60
        for child in dead:
            self._wait(deadline, child.name)
        if dead and "GPUBILL_DATA_DIR" in self.env and self._lock is not None:
            self.write_state()  # new PIDs
        return [c.name for c in dead]

    @contextmanager
    def paused(self, name: str) -> Iterator[None]:
        """Freeze child ``name`` (SIGSTOP to its process group) for the block, then let it
        go on (SIGCONT): tests use it to hold work back deterministically."""
        pgid = self.child(name).proc.pid
        os.killpg(pgid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(pgid, signal.SIGCONT)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop every child: SIGTERM to all at once, SIGKILL to what is left after
        ``grace_s`` in all, then the broker (so beat can release its RedBeat lock and
        workers requeue unacknowledged tasks first). Safe to call twice."""
        for child in self.children:
            child.terminate()
        deadline = time.monotonic() + grace_s
        while self.children:
            child = self.children.pop()
            left = max(0.0, deadline - time.monotonic())
            child.stop(min(left, FLOWER_GRACE_S) if child.name == "flower" else left)
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self._lock is not None:
            supervision.clear_state(Path(self.env["GPUBILL_DATA_DIR"]))
            self._lock.close()  # releases the flock
            self._lock = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
