"""``GET /docs``: Swagger UI over the same ``/openapi.json`` (one source of truth).

Swagger UI's files come from the ``swagger-ui-py`` wheel (Swagger UI 5.x, which renders
OpenAPI 3.1) and are served from here, so the page needs no CDN or network. "Authorize"
takes the API key (``GPUBILL_API_KEYS``; dev: ``gpubill_dev_api_key``) for "Try it out".
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from flask import Blueprint, Response, send_from_directory

from webhook_receiver import openapi
from webhook_receiver.responses import ErrorBody

bp = Blueprint("docs", __name__)
STATIC = Path(str(files("swagger_ui") / "static"))
ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
          "favicon-32x32.png", "favicon-16x16.png", "oauth2-redirect.html")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gpubill API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/static/swagger-ui-standalone-preset.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "StandaloneLayout"});
</script></body></html>
"""


@bp.get("/docs")
def docs() -> Response:
    """The Swagger UI page (HTML)."""
    return Response(PAGE, mimetype="text/html")


@bp.get("/docs/static/<name>")
def asset(name: str) -> Response:
    """One of Swagger UI's files; 404 JSON for any other name."""
    from webhook_receiver.errors import ApiError

    if name not in ASSETS:
        raise ApiError(404, "not_found", "no such documentation asset")
    return send_from_directory(STATIC, name, max_age=3600)


openapi.register(openapi.Route("get", "/docs", "API documentation (Swagger UI, HTML)", {200: None},
                               tag="operations", content_type="text/html"))
openapi.register(openapi.Route("get", "/docs/static/{name}", "Swagger UI assets", {200: None, 404: ErrorBody},
                               tag="operations", content_type="application/octet-stream",
                               params={"name": "file name"}))
