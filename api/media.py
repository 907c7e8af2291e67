"""Public photo copies (EXIF removed). Originals are never served from here."""

from __future__ import annotations

from flask import Blueprint, abort, send_from_directory

from api.db import settings

blp = Blueprint("media", __name__)


@blp.route("/media/public/<path:key>")
def public_media(key: str):  # noqa: ANN201
    root = settings().media_dir / "public"
    if not (root / key).resolve().is_relative_to(root.resolve()):
        abort(404)
    return send_from_directory(root, key, max_age=7 * 86400)
