"""Stripe stand-in pieces: real-shaped, signed webhook events built from Stripe's fixtures."""
