"""The HTTP layer: `create_app()` and one blueprint per resource."""

from __future__ import annotations

import atexit
import logging
from typing import TYPE_CHECKING, Any

from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings

if TYPE_CHECKING:
    from core.service_area import AreaConfig

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    sessions: sessionmaker[Session] | None = None,
    queue: Any = None,
) -> Flask:
    """Build the app. Tests pass their own `sessions` (bound to a rolled-back connection)."""
    from api import citistat_page, cors, db, docs, errors, health, inputs, media, status_page, tiles
    from api.client_address import warn_of_untrusted_forwarding
    from api.open311.routes import blp as open311_blp
    from api.resources import register_resources
    from api.spec import make_api
    from core.db import make_engine, make_sessionmaker
    from core.replica import Replica
    from core.service_area import AreaConfig
    from screens import blp as screens_blp
    from workers.app import Queue

    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_upload_bytes * 4,
        JSON_SORT_KEYS=False,
        API_TITLE="StreetLoop",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="/docs/assets/",
        API_SPEC_OPTIONS={
            "info": {
                "description": (
                    "Staff and crew API of StreetLoop. Residents' apps use the Open311 "
                    "GeoReport v2 API at /open311/v2 (discovery: /open311/v2/discovery.json)."
                )
            },
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        },
    )
    app.extensions["streetloop.settings"] = settings
    if sessions is None:
        engine = make_engine(
            settings.database_url,
            connect_timeout_s=settings.db_connect_timeout_s,
            pool_size=10,
            max_overflow=10,
        )
        sessions = make_sessionmaker(engine)
        # Its idle connections are closed at exit rather than left to the garbage collector
        # (gunicorn workers run atexit hooks when they stop).
        atexit.register(engine.dispose)
    app.extensions["streetloop.sessions"] = sessions
    # The read replica for reports and Open311's lists, when DATABASE_REPLICA_URL is set.
    replica = Replica.from_settings(settings)
    if replica is not None:
        atexit.register(replica.dispose)
    app.extensions["streetloop.replica"] = replica
    area = AreaConfig.from_settings(settings)
    app.extensions["streetloop.service_area"] = area
    _warn_without_service_area(sessions, area)
    if queue is None:
        queue = Queue(settings)
        # Its connection pool has threads: closed at exit (see Queue.close), a stopping
        # web worker waits on none of them.
        atexit.register(queue.close)
    app.extensions["streetloop.queue"] = queue

    db.init_app(app)
    # First: a write from a web page on an origin the city did not list is refused before
    # its body is read.
    cors.init_app(app)
    # Before any view: NUL characters and lone surrogates are refused before they reach one.
    inputs.init_app(app)
    # Once per process: a forwarded request that the trusted-proxy setting cannot account for.
    app.before_request(warn_of_untrusted_forwarding)
    api = make_api(app)
    register_resources(api)
    # At the root, outside /api/v1: probes are configured once, by path, for every version.
    api.register_blueprint(health.blp)
    app.register_blueprint(open311_blp)
    app.register_blueprint(docs.blp)
    app.register_blueprint(media.blp)
    app.register_blueprint(status_page.blp)
    app.register_blueprint(citistat_page.blp)
    app.register_blueprint(tiles.blp)
    app.register_blueprint(screens_blp)
    errors.init_app(app)
    return app


def _warn_without_service_area(sessions: sessionmaker[Session], area: AreaConfig) -> None:
    """Say so when reports are accepted from anywhere: a city that has not set up its
    districts yet should hear it from the log, not from a report filed from abroad."""
    from sqlalchemy.exc import SQLAlchemyError

    from core.service_area import area_source

    if area.polygon is not None:
        return
    try:
        with sessions() as s:
            source = area_source(s, area)
    except SQLAlchemyError as exc:
        # The database may be down or not migrated yet; the app must still start (and
        # report its own errors per request), so this check is only skipped.
        log.info("service area not checked at start: %s", exc.__class__.__name__)
        return
    if source == "none":
        log.warning(
            "no service area: reports are accepted from anywhere; add districts or set STREETLOOP_SERVICE_AREA"
        )
