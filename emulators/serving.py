"""Serving a stand-in in the foreground until SIGTERM or SIGINT (``gpubill emulate …``)."""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server


def start_app(app: Flask, host: str, port: int, name: str) -> tuple[BaseWSGIServer, threading.Thread]:
    """Serve ``app`` from a daemon thread; ``port=0`` picks a free port (``server.server_port``)."""
    server = make_server(host, port, app, threaded=True)
    # A short poll interval makes ``stop_app`` return quickly (the default waits up to 0.5 s).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=name, daemon=True)
    thread.start()
    return server, thread


def stop_app(server: BaseWSGIServer, thread: threading.Thread, timeout_s: float = 5.0) -> None:
    """Stop accepting requests and close the socket."""
    server.shutdown()
    thread.join(timeout_s)
    server.server_close()


def run_until_signal(start: Callable[[], tuple[BaseWSGIServer, threading.Thread]],
                     stop: Callable[[BaseWSGIServer, threading.Thread], None]) -> None:
    """``start()`` the server thread, wait for SIGTERM/SIGINT (or the thread dying), then
    ``stop`` it and restore the previous handlers. Call from the main thread."""
    stopping = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    server, thread = start()
    try:
        # A timed wait keeps the main thread returning to the interpreter, where
        # signal handlers run.
        while not stopping.wait(0.5):
            if not thread.is_alive():
                break
    finally:
        stop(server, thread)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
