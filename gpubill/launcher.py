"""Runs the whole service as child processes, and stops it without leaving orphans.

``Stack`` starts, in order: the embedded broker (unless ``GPUBILL_BROKER_URL`` is set),
the database migrations, the RunPod stand-in (optional), the receiver under gunicorn,
a Celery worker on every queue and the single beat. Each child runs in its own process
group, so stopping it (SIGTERM, then SIGKILL after a grace period) also stops its
children (gunicorn and prefork workers). Logs go to ``{data_dir}/logs/{name}.log``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests

from gpubill import queues
from gpubill.broker import EmbeddedBroker, free_port
from gpubill.settings import Settings
from ledger.migrate import upgrade

EMULATOR_PROFILES = Path(__file__).resolve().parent.parent / "emulators" / "runpod" / "profiles.toml"


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log: IO[bytes]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace_s: float) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        try:  # whatever is left of the group (forked pool processes)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self.log.close()


@dataclass
class Stack:
    """The service on this machine. ``env`` overrides ``GPUBILL_*`` for every child."""

    env: dict[str, str] = field(default_factory=dict)
    emulator: bool = True
    worker_concurrency: int = 2
    beat: bool = True
    children: list[Child] = field(default_factory=list)
    broker: EmbeddedBroker | None = None

    def __post_init__(self) -> None:
        self.env = {**{k: v for k, v in os.environ.items() if k.startswith("GPUBILL_")}, **self.env}
        self.env.setdefault("GPUBILL_RECEIVER_PORT", str(free_port()))
        port = int(self.env["GPUBILL_RECEIVER_PORT"])
        self.env.setdefault("GPUBILL_PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
        if self.emulator:
            self.env.setdefault("GPUBILL_EMULATOR_PORT", str(free_port()))
            self.env.setdefault("GPUBILL_RUNPOD_BASE_URL",
                                f"http://127.0.0.1:{self.env['GPUBILL_EMULATOR_PORT']}/v2")

    @property
    def settings(self) -> Settings:
        return Settings(**{k.removeprefix("GPUBILL_").lower(): v for k, v in self.env.items()})

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.env['GPUBILL_RECEIVER_PORT']}"

    @property
    def log_dir(self) -> Path:
        return Path(self.env.get("GPUBILL_DATA_DIR", "var")) / "logs"

    # -- start -------------------------------------------------------------------------
    def start(self, timeout_s: float = 60) -> "Stack":
        try:
            self._start(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout_s: float) -> None:
        data_dir = Path(self.env.get("GPUBILL_DATA_DIR", "var"))
        self.env["GPUBILL_DATA_DIR"] = str(data_dir.resolve())
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.env.get("GPUBILL_BROKER_URL"):
            self.broker = EmbeddedBroker(data_dir / "broker").start()
            self.env["GPUBILL_BROKER_URL"] = self.broker.url
        cfg = self.settings
        upgrade(cfg.sqlalchemy_url)
        py = sys.executable
        if self.emulator:
            self._spawn("runpod-emulator", [py, "-m", "gpubill.cli", "emulate", "runpod",
                                            "--port", str(cfg.emulator_port),
                                            "--config", str(EMULATOR_PROFILES)])
        self._spawn("receiver", [py, "-m", "gunicorn", "--workers", "2", "--threads", "4",
                                 "--worker-class", "gthread", "--graceful-timeout", "10",
                                 "--bind", f"{cfg.receiver_host}:{cfg.receiver_port}",
                                 "webhook_receiver:create_app()"])
        self._spawn("worker", [py, "-m", "celery", "-A", "worker.app", "worker",
                               "--queues", ",".join(queues.QUEUES),
                               "--concurrency", str(self.worker_concurrency),
                               "--hostname", f"gpubill-{cfg.receiver_port}@%h",
                               "--events", "--without-gossip", "--without-mingle",
                               "--loglevel", cfg.log_level])
        if self.beat:
            self._spawn("beat", [py, "-m", "celery", "-A", "worker.app", "beat",
                                 "--loglevel", cfg.log_level])
        deadline = time.monotonic() + timeout_s
        for name in ("receiver", "runpod-emulator", "worker"):
            if any(c.name == name for c in self.children):
                self._wait(deadline, name)

    def _ready(self, name: str) -> bool:
        cfg = self.settings
        if name == "receiver":
            return requests.get(f"{self.receiver_url}/healthz", timeout=1).ok
        if name == "runpod-emulator":
            return requests.get(f"{cfg.runpod_base_url}/probe/health", timeout=1, headers={
                "Authorization": f"Bearer {cfg.runpod_api_key.get_secret_value()}"}).ok
        if name == "worker":
            return self._worker_ready(cfg)
        return True

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")
        env = {**os.environ, **self.env}
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.children.append(Child(name, argv, proc, log))

    def _worker_ready(self, cfg: Settings) -> bool:
        app = queues.producer(cfg.broker_url)
        try:
            return bool(app.control.ping(timeout=0.5))
        finally:
            app.close()

    def _wait(self, deadline: float, name: str) -> None:
        while True:
            dead = [c.name for c in self.children if not c.alive()]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited; see {self.log_dir}")
            try:
                if self._ready(name):
                    return
            except Exception:  # not up yet
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
        self._spawn(name, old.argv)
        self._wait(time.monotonic() + 60, name)

    def stop(self, grace_s: float = 15) -> None:
        """Stop every child, newest first (beat and worker before the receiver and
        broker), then the broker. Safe to call twice."""
        while self.children:
            self.children.pop().stop(grace_s)
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
