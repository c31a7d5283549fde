"""What a supervisor needs from the OS: children that die with their launcher, a
one-line error for a busy port, one stack per data directory, and the record of what
a running stack started (``{data_dir}/stack.json``) for the other CLI commands.

Linux's ``prctl(PR_SET_PDEATHSIG)`` (man 2 prctl) sends the child a signal when the
thread that forked it dies, even by SIGKILL; elsewhere it is a no-op and ``stop()``
remains the only cleanup.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import IO, Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STATE_FILE = "stack.json"
LOCK_FILE = "stack.lock"


class StackError(RuntimeError):
    """A stack cannot start; the message is one line meant for the operator."""


def die_with_parent(parent_pid: int) -> Any:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets SIGTERM when its parent
    dies (so gunicorn and Celery shut their own children down too). If the parent is
    already gone by the time the child runs, the child exits at once."""
    def preexec() -> None:
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)
    return preexec


def check_ports_free(ports: dict[str, int], host: str = "127.0.0.1") -> None:
    """Raise ``StackError`` naming the first service whose TCP port is taken.

    ``SO_REUSEADDR`` as the servers themselves bind (gunicorn, valkey, werkzeug,
    tornado): a port still listened on is refused, but one whose last connections
    linger in ``TIME_WAIT`` (60 s on Linux after the server closed them, e.g. the
    broker of a stack just stopped) is free. Without it a second ``up`` within a
    minute of Ctrl-C was refused "port … (broker) is already in use" (seen, issue 16)."""
    for name, port in ports.items():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                raise StackError(f"port {port} ({name}) is already in use on {host}; stop what "
                                 f"holds it or set GPUBILL_{_env_name(name)}") from None


def _env_name(service: str) -> str:
    return {"receiver": "RECEIVER_PORT", "runpod-emulator": "EMULATOR_PORT",
            "stripe-emulator": "STRIPE_EMULATOR_PORT", "flower": "FLOWER_PORT",
            "broker": "BROKER_PORT"}.get(service, service.upper() + "_PORT")


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Take the data directory's exclusive lock (``flock``, released when the process
    dies); raise ``StackError`` if another stack holds it. Keep the returned file open."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise StackError(f"a stack is already running in {data_dir} (pid {holder}); "
                         "stop it or use another GPUBILL_DATA_DIR") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def write_state(data_dir: Path, state: dict[str, Any]) -> None:
    """Record what the stack started (URLs, PIDs) atomically in ``{data_dir}/stack.json``."""
    tmp = data_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(data_dir / STATE_FILE)


def read_state(data_dir: Path) -> dict[str, Any] | None:
    """The running stack's record, or None if there is none or its launcher is gone."""
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


def clear_state(data_dir: Path) -> None:
    (data_dir / STATE_FILE).unlink(missing_ok=True)
