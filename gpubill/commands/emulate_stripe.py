"""``gpubill emulate stripe``: the Stripe stand-in as a process."""
from __future__ import annotations

import logging

import click


@click.command("stripe")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8011, show_default=True, type=int)
@click.option("--webhook-url", default=None,
              help="Where signed webhooks go (default: {GPUBILL_PUBLIC_BASE_URL}/webhooks/stripe).")
def emulate_stripe(host: str, port: int, webhook_url: str | None) -> None:
    """Serve the Stripe API subset gpubill uses (point stripe.StripeClient at
    http://HOST:PORT) and a control surface (/_control/...) that pays, expires, refunds
    and disputes, sending signed webhooks signed with GPUBILL_STRIPE_WEBHOOK_SECRET."""
    from base.settings import get_settings
    from emulators.stripe.app import create_app
    from emulators.stripe.server import serve

    cfg = get_settings()
    url = webhook_url or f"{cfg.public_base_url.rstrip('/')}/webhooks/stripe"
    app = create_app(api_key=cfg.stripe_secret_key.get_secret_value(),
                     webhook_secret=cfg.stripe_webhook_secret.get_secret_value(),
                     webhook_url=url, url_base=f"http://{host}:{port}")
    logging.getLogger("gpubill.emulate").info("Stripe stand-in on http://%s:%s → webhooks to %s", host, port, url)
    serve(app, host=host, port=port)
