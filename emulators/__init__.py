"""Local stand-ins for outside services (RunPod serverless, Stripe webhooks)."""
