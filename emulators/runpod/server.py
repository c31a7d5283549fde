"""Run the RunPod stand-in over HTTP with werkzeug's threaded server.

``serve`` blocks until SIGTERM/SIGINT (the demo launcher's stop signal);
``start_in_thread``/``stop`` are for tests and embedding.
"""
from __future__ import annotations

import threading
from typing import cast

from flask import Flask
from werkzeug.serving import BaseWSGIServer

from emulators.serving import run_until_signal, start_app, stop_app

from .app import create_app
from .config import EmulatorConfig


def start_in_thread(config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0
                    ) -> tuple[BaseWSGIServer, threading.Thread]:
    """Start serving in a daemon thread; ``port=0`` picks a free port (``server.server_port``).
    The engine is ``server.app.extensions["runpod_engine"]``."""
    return start_app(create_app(config), host, port, "runpod-standin")


def stop(server: BaseWSGIServer, thread: threading.Thread, timeout_s: float = 5.0) -> None:
    """Stop accepting requests, then stop the engine's job and webhook threads."""
    stop_app(server, thread, timeout_s)
    cast(Flask, server.app).extensions["runpod_engine"].shutdown()


def serve(config: EmulatorConfig, host: str = "127.0.0.1", port: int = 8010) -> None:
    """Serve ``http://{host}:{port}/v2`` until SIGTERM or SIGINT, then stop cleanly.
    Must be called from the main thread (signal handlers)."""
    run_until_signal(lambda: start_in_thread(config, host, port), stop)
