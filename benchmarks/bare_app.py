"""The receiver's references, served by the intake benchmark on the receiver's exact
gunicorn settings:

* ``create_app``: the framework's ceiling, a Flask app whose only route returns an
  empty body;
* ``create_store_app``: the *store floor*, the least any receiver that stores an event
  before answering must do — one ``INSERT`` of the raw body and its ``COMMIT`` (psycopg,
  one connection per thread, no pool, no ORM, no signature check, no parsing, no
  publish) — then an empty body. Its table is ``bench_store_floor``, created by the
  benchmark in its own database (``GPUBILL_BENCH_STORE_DSN``: a libpq conninfo).
"""
import os
import threading

import psycopg
from flask import Flask, request

_local = threading.local()


def create_app() -> Flask:
    app = Flask(__name__)

    @app.route("/", methods=["GET", "POST"])
    def empty() -> str:
        return ""

    return app


def create_store_app() -> Flask:
    app = Flask(__name__)

    @app.route("/", methods=["POST"])
    def store() -> str:
        conn = getattr(_local, "conn", None)
        if conn is None:
            conn = _local.conn = psycopg.connect(os.environ["GPUBILL_BENCH_STORE_DSN"])
        conn.execute("INSERT INTO bench_store_floor (body) VALUES (%s)", (request.get_data().decode(),))
        conn.commit()
        return ""

    return app
