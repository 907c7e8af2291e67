"""Public photo copies (EXIF removed). Originals are never served from here."""

from __future__ import annotations

import mimetypes

from flask import Blueprint, Response, abort, send_from_directory

from api.db import media_storage, settings
from core.photos import MEDIA_PATH

blp = Blueprint("media", __name__)


@blp.route(f"{MEDIA_PATH}/public/<path:key>")
def public_media(key: str) -> Response:
    storage = media_storage()
    if storage.path("public/x") is not None:
        root = settings().media_dir / "public"
        if not (root / key).resolve().is_relative_to(root.resolve()):
            abort(404)
        return send_from_directory(root, key, max_age=7 * 86400)
    # Object storage: stream it through (a CDN or presigned URLs can take over later).
    try:
        data = storage.get(f"public/{key}")
    except (FileNotFoundError, ValueError):  # missing, or a key that tries to leave public/
        abort(404)
    response = Response(data, mimetype=mimetypes.guess_type(key)[0] or "application/octet-stream")
    response.cache_control.max_age = 7 * 86400
    response.cache_control.public = True
    return response
