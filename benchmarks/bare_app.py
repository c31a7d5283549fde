"""The framework's ceiling: a Flask app whose only route returns an empty body, served
by the benchmark on the receiver's exact gunicorn settings."""
from flask import Flask


def create_app() -> Flask:
    app = Flask(__name__)

    @app.route("/", methods=["GET", "POST"])
    def empty() -> str:
        return ""

    return app
