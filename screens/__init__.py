"""The screens: the crew app (/crew/), the console of dispatchers, supervisors and
call-takers (/console/), and the files they share (/assets/).

They are static files served by StreetLoop itself: plain JavaScript modules with no build
step, and every library vendored under assets/vendor with its licence. Cities run closed
networks, so nothing is fetched from a CDN at run time. Everything a screen shows comes
from the same /api/v1 the phones and integrators use.

Every answer here carries a Content-Security-Policy that allows no inline script and no
other origin (but a city's own tile server, when one is configured), so a resident's text
that slipped into the page as HTML could still run nothing."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, redirect, request, send_from_directory
from werkzeug.wrappers import Response as BaseResponse

STATIC = Path(__file__).parent / "static"

blp = Blueprint("screens", __name__)

# Types the platform's mimetypes table may lack or get wrong; a module script served as
# anything but JavaScript is refused by the browser (X-Content-Type-Options: nosniff).
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".webmanifest": "application/manifest+json",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def content_security_policy(tile_url: str | None) -> str:
    """No inline script, no eval, nothing from another origin; a configured tile server
    is the one other origin the maps may load from."""
    extra = ""
    if tile_url:
        parts = urlsplit(tile_url)
        if parts.scheme in ("http", "https") and parts.netloc:
            extra = f" {parts.scheme}://{parts.netloc}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' data: blob:{extra}; connect-src 'self'{extra}; font-src 'self'; "
        "worker-src 'self'; manifest-src 'self'; media-src 'self' blob:; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def _serve(folder: Path, name: str) -> Response:
    response = send_from_directory(folder, name, max_age=0)
    suffix = Path(name).suffix
    if suffix in _TYPES:
        response.headers["Content-Type"] = _TYPES[suffix]
    return response


@blp.after_request
def _headers(response: Response) -> Response:
    settings = current_app.extensions["streetloop.settings"]
    response.headers["Content-Security-Policy"] = content_security_policy(settings.tile_url)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    # The crew app asks for the phone's position and camera; nothing else may.
    response.headers["Permissions-Policy"] = "geolocation=(self), camera=(self), microphone=()"
    # Revalidated on every load (an ETag answers 304): a city's update reaches the phones
    # at their next start, while the crew app's service worker keeps them for offline use.
    response.headers["Cache-Control"] = "no-cache"
    return response


@blp.route("/crew")
@blp.route("/console")
def _without_slash() -> BaseResponse:  # what flask.redirect makes
    return redirect(request.path + "/", code=308)


@blp.route("/crew/", defaults={"name": "index.html"}, endpoint="crew")
@blp.route("/crew/<path:name>", endpoint="crew_file")
def crew(name: str) -> Response:
    return _serve(STATIC / "crew", name)


@blp.route("/console/", defaults={"name": "index.html"}, endpoint="console")
@blp.route("/console/<path:name>", endpoint="console_file")
def console(name: str) -> Response:
    return _serve(STATIC / "console", name)


@blp.route("/assets/<path:name>", endpoint="asset")
def asset(name: str) -> Response:
    return _serve(STATIC / "assets", name)
