"""The HTTP receiver (Flask): Stripe and RunPod webhooks, the app's /v1 API, health."""
from webhook_receiver.app import create_app

__all__ = ["create_app"]
