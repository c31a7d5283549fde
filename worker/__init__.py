"""Celery workers: place holds, dispatch to RunPod, track, settle or release; apply
Stripe events. Tasks take ids only and are idempotent."""
