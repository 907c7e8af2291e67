"""Swagger UI's assets for /docs, from the vendored copy: no CDN, works offline.

The copy is swagger-ui-dist (screens/static/assets/vendor/, fetched and checked by
scripts/vendor.sh), version 5: the first to read OpenAPI 3.1, which /openapi.json is."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

SWAGGER_UI = (
    Path(__file__).resolve().parent.parent
    / "screens"
    / "static"
    / "assets"
    / "vendor"
    / "swagger-ui-dist"
)

blp = Blueprint("docs_assets", __name__)


@blp.route("/docs/assets/<path:filename>")
def asset(filename: str) -> Response:
    return send_from_directory(SWAGGER_UI, filename, max_age=86400)
