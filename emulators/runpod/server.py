"""Run the RunPod stand-in over HTTP with werkzeug's threaded server.

``serve`` blocks until SIGTERM/SIGINT (the demo launcher's stop signal);
``start_in_thread``/``stop`` are for tests and embedding.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType

from werkzeug.serving import BaseWSGIServer, make_server

from .app import create_app
from .config import EmulatorConfig


def start_in_thread(config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0
                    ) -> tuple[BaseWSGIServer, threading.Thread]:
    """Start serving in a daemon thread; ``port=0`` picks a free port (``server.server_port``).
    The engine is ``server.app.extensions["runpod_engine"]``."""
    server = make_server(host, port, create_app(config), threaded=True)
    # A short poll interval makes ``stop`` return quickly (the default waits up to 0.5 s).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="runpod-standin", daemon=True)
    thread.start()
    return server, thread


def stop(server: BaseWSGIServer, thread: threading.Thread, timeout_s: float = 5.0) -> None:
    """Stop accepting requests, then stop the engine's job and webhook threads."""
    server.shutdown()
    thread.join(timeout_s)
    server.server_close()
    server.app.extensions["runpod_engine"].shutdown()


def serve(config: EmulatorConfig, host: str = "127.0.0.1", port: int = 8010) -> None:
    """Serve ``http://{host}:{port}/v2`` until SIGTERM or SIGINT, then stop cleanly.
    Must be called from the main thread (signal handlers)."""
    stopping = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    server, thread = start_in_thread(config, host, port)
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
