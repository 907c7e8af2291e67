"""Swagger UI assets served from the installed swagger-ui-bundle: no CDN, works offline."""

from __future__ import annotations

from flask import Blueprint, send_from_directory
from swagger_ui_bundle import swagger_ui_path

blp = Blueprint("docs_assets", __name__)


@blp.route("/docs/assets/<path:filename>")
def asset(filename: str):  # noqa: ANN201
    response = send_from_directory(swagger_ui_path, filename, max_age=86400)
    return response
