"""Gateways to the outside services: RunPod (``gateways.runpod``) and Stripe
(``gateways.stripe``), each a small class around the real SDK or HTTP API; the stand-ins
in ``emulators/`` are selected by configuration (base URLs), never by code paths."""
