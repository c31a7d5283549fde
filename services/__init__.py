"""Framework-free services: the job lifecycle, Stripe event handling, refunds, sweeps and
notifications. Plain functions taking a session factory (or session) and their
collaborators; no Celery, no Flask. ``worker/`` and ``webhook_receiver/`` adapt them."""
