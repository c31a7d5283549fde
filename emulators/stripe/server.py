"""Run the Stripe stand-in over HTTP (werkzeug's threaded server).

``serve`` blocks until SIGTERM/SIGINT (the launcher's stop signal); ``start_in_thread``
and ``stop`` are for tests and embedding.
"""
from __future__ import annotations

import threading

from flask import Flask
from werkzeug.serving import BaseWSGIServer

from emulators.serving import run_until_signal, start_app, stop_app


def start_in_thread(app: Flask, host: str = "127.0.0.1", port: int = 0
                    ) -> tuple[BaseWSGIServer, threading.Thread]:
    """Serve ``app`` from a daemon thread; ``port=0`` picks a free port (``server.server_port``)."""
    return start_app(app, host, port, "stripe-standin")


stop = stop_app


def serve(app: Flask, host: str = "127.0.0.1", port: int = 8011) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly (call from the main thread)."""
    run_until_signal(lambda: start_in_thread(app, host, port), stop)
