"""Local stand-in for RunPod serverless: the REST API the ``runpod`` SDK speaks, with
measured, deterministic jobs. Point the SDK at it with
``runpod.endpoint_url_base = "http://127.0.0.1:8010/v2"``."""
from .app import create_app
from .config import EmulatorConfig, EndpointProfile
from .server import serve

__all__ = ["EmulatorConfig", "EndpointProfile", "create_app", "serve"]
