"""Cross-origin requests (CORS) from browsers on other sites.

Two kinds of caller, two rules:

- **Open311 reads are public.** Any page may read the services, requests and updates
  (GeoReport v2 is an open-data API), so `GET`/`HEAD` under /open311, and the OpenAPI
  document, answer `Access-Control-Allow-Origin: *`. No credentials are involved: Open311
  reads take none, and StreetLoop signs in with bearer tokens, never cookies.
- **Writes and the staff API only from the origins a city lists** in
  `STREETLOOP_CORS_ORIGINS` (e.g. its own report form on the city's web site). Those get
  their origin echoed back, with the headers a client needs to send (Authorization,
  Idempotency-Key, If-None-Match…) and to read (ETag, Retry-After…).

A browser enforces CORS on reads, but a plain form POST is sent before any check, so an
Open311 write that comes from a page on an unlisted origin is refused here with a 403
(FixMyStreet and other servers send no `Origin` and are not affected). The staff API needs
no such refusal: its calls carry `Authorization`, which makes the browser ask first
(preflight), and an unlisted origin gets no permission.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request

from api.db import settings

PREFLIGHT_MAX_AGE_S = 600
# What a listed origin's page may send beyond the CORS-safelisted headers, and read back.
ALLOW_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "If-Match", "If-None-Match")
EXPOSE_HEADERS = (
    "Content-Disposition",
    "ETag",
    "Idempotent-Replayed",
    "Location",
    "Retry-After",
    "WWW-Authenticate",
)
_READS = frozenset({"GET", "HEAD"})


def _public_read(path: str, method: str) -> bool:
    return method in _READS and (path.startswith("/open311/") or path == "/openapi.json")


def _listed(origin: str) -> bool:
    return origin.lower() in settings().cors_origins


def _same_origin(origin: str) -> bool:
    """A page of StreetLoop itself (browsers send Origin on every POST, even same-origin)."""
    netloc = urlsplit(origin).netloc.lower()
    ours = {request.host.lower(), urlsplit(settings().public_base_url).netloc.lower()} - {""}
    return netloc in ours


def _route_methods() -> set[str]:
    """Every method the path takes (GET and POST of one path may be two views)."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    return set(adapter.allowed_methods()) - {"OPTIONS"}


def _refuse(origin: str) -> Response:
    message = (
        f"requests from {origin} are not allowed: a city admin can add the origin to "
        "STREETLOOP_CORS_ORIGINS"
    )
    if request.path.startswith("/open311"):
        from api.open311.formats import open311_error

        return open311_error(403, message)
    from api.errors import error_response

    return error_response(403, message)


def _preflight(origin: str) -> Response | None:
    """The browser asking before a request that is not "simple" (OPTIONS with
    Access-Control-Request-Method): answered here, before any view runs."""
    wanted = request.headers.get("Access-Control-Request-Method", "").upper()
    methods = _route_methods()
    if not methods:
        return None  # no such route: the usual 404
    if _public_read(request.path, wanted):
        response = Response(status=204)
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Methods"] = ", ".join(sorted(methods & _READS))
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, If-None-Match"
    elif _listed(origin):
        response = Response(status=204)
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = ", ".join(sorted(methods))
        response.headers["Access-Control-Allow-Headers"] = ", ".join(ALLOW_HEADERS)
    else:
        response = _refuse(origin)
    response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
    response.vary.add("Origin")
    return response


def _before() -> Response | None:
    origin = request.headers.get("Origin")
    if not origin:
        return None
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return _preflight(origin)
    writes = request.method not in _READS | {"OPTIONS"}
    if (
        writes
        and request.path.startswith("/open311")
        and not (_listed(origin) or _same_origin(origin))
    ):
        return _refuse(origin)
    return None


def _after(response: Response) -> Response:
    if "Access-Control-Allow-Origin" in response.headers:
        return response  # a preflight answered above
    if _public_read(request.path, request.method):
        # With or without an Origin: a cache in between may hand this answer to any page.
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Expose-Headers"] = "ETag"
        return response
    if not settings().cors_origins:
        return response
    # The answer depends on the origin: a cache must not give one origin's to another.
    response.vary.add("Origin")
    origin = request.headers.get("Origin")
    if origin and _listed(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSE_HEADERS)
    return response


def init_app(app: Flask) -> None:
    app.before_request(_before)
    app.after_request(_after)
