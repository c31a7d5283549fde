"""One child process of the ``Stack``: started in its own process group (so stopping it
stops its children too — gunicorn and prefork workers) with its output appended to
``{log_dir}/{name}.log``, and SIGTERM if the launcher dies (``gpubill.supervision``)."""
from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from gpubill import supervision


@dataclass
class Child:
    """A running child: its name, command line, process, open log and extra environment."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def spawn(cls, name: str, argv: list[str], env: dict[str, str], log_dir: Path,
              extra_env: dict[str, str] | None = None) -> Child:
        """Start ``argv`` with ``os.environ`` + ``env`` + ``extra_env``, stdin closed."""
        log = (log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(argv, env={**os.environ, **env, **(extra_env or {})}, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True,
                                preexec_fn=supervision.die_with_parent(os.getpid()))
        return cls(name, argv, proc, log, extra_env or {})

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        """SIGTERM to the child's process group (no wait)."""
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self, grace_s: float) -> None:
        """SIGTERM to the group, wait up to ``grace_s`` seconds, SIGKILL what is left of
        the group (forked pool processes), reap, close the log."""
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
