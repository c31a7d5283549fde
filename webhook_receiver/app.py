"""Flask app factory: ``create_app(settings=None)``.

The receiver verifies, persists, enqueues and answers; it never imports task code. Views
queue their tasks with ``base.after_commit.publish_after_commit`` inside the transaction
that makes them due; both session factories publish them at commit
(``resources.publisher``: Stripe event ids through the batch publisher, the rest at once).
"""
from __future__ import annotations

from typing import cast

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from base import after_commit, queues
from base.batch_publisher import BatchPublisher
from base.settings import Settings, get_settings
from ledger.db import make_engine, make_sessionmaker
from ledger.inbox import intake_engine
from webhook_receiver import (
    api,
    bodies,
    docs,
    entries,
    errors,
    health,
    logcontext,
    metrics,
    openapi,
    ratelimit,
    runpod_webhooks,
    stripe_webhooks,
    subscriptions,
    topups,
)
from webhook_receiver.resources import Resources, publisher


def create_app(settings: Settings | None = None) -> Flask:
    """Build the receiver. ``settings`` defaults to the environment (``GPUBILL_*``)."""
    cfg = settings or get_settings()
    if not cfg.broker_url:
        raise RuntimeError("GPUBILL_BROKER_URL is not set (gpubill up sets it for the embedded broker)")
    app = Flask(__name__)
    app.config["GPUBILL"] = cfg
    cast(DefaultJSONProvider, app.json).sort_keys = False  # Flask's default provider
    producer = queues.producer(cfg.broker_url, sent_events=cfg.task_sent_events)
    found = Resources(
        sessions=make_sessionmaker(make_engine(cfg.sqlalchemy_url, ping_every_checkout=True)),
        producer=producer,
        intake=make_sessionmaker(intake_engine(cfg.sqlalchemy_url, ping_every_checkout=True)),
        stripe_events=BatchPublisher(producer, queues.PROCESS_STRIPE_EVENT),
    )
    for factory in (found.sessions, found.intake):
        after_commit.install(factory, publisher(producer, found.stripe_events))
    app.extensions["gpubill"] = found
    errors.register(app)
    for module in (api, stripe_webhooks, runpod_webhooks, health, topups, subscriptions, entries):
        app.register_blueprint(module.bp)
    metrics.init_app(app)  # request metrics and GET /metrics (times refused requests too)
    bodies.init_app(app)  # size and depth limits: before anything else reads the request
    ratelimit.init_app(app, [api.bp, entries.bp, topups.bp, subscriptions.bp])  # /v1 only
    logcontext.init_app(app)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(docs.bp)  # /docs: Swagger UI over /openapi.json
    return app
