"""Local Stripe stand-in: the API subset ``stripe.StripeClient`` uses (Checkout Sessions,
Events, Charges, Refunds, Disputes, Invoices) plus a control surface that pays, expires,
refunds and disputes, sending real-shaped, signed webhooks built from Stripe's fixtures.
Point the SDK at it with ``StripeClient(key, base_addresses={"api": "http://127.0.0.1:8011"})``."""
