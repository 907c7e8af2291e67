"""Configuration from the environment (12-factor): one frozen object, read once."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import TypedDict
from zoneinfo import ZoneInfo

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def normalize_database_url(url: str) -> str:
    """Accept the libpq-style URLs people paste and pin the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def libpq_url(url: str) -> str:
    """The same URL without SQLAlchemy's driver suffix, for psycopg/procrastinate."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _number[T: (int, float)](env: dict[str, str], name: str, default: T) -> T:
    """A numeric setting of the default's type; a bad value stops start-up with its name."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return type(default)(raw)
    except ValueError as exc:
        kind = "an integer" if type(default) is int else "a number"
        raise ValueError(f"{name} must be {kind}, got {raw!r}") from exc


def _bounded(env: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    value = _number(env, name, default)
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _share(env: dict[str, str], name: str, default: float) -> float:
    value = _number(env, name, default)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")
    return value


def _flag(env: dict[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in {"", "0", "false", "no", "off"}:
        return False
    if raw in {"1", "true", "yes", "on"}:
        return True
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def _metres(env: dict[str, str], name: str, default: float) -> float:
    value = _number(env, name, default)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative number of metres, got {value}")
    return value


def _service_area_file(env: dict[str, str]) -> Path | None:
    """The path, once its polygon has been read and checked: a bad file stops start-up
    here rather than letting every report through, or none."""
    raw = env.get("STREETLOOP_SERVICE_AREA", "").strip()
    if not raw:
        return None
    from core.service_area import read_area_file

    path = Path(raw)
    try:
        read_area_file(path)
    except ValueError as exc:
        raise ValueError(f"STREETLOOP_SERVICE_AREA: {exc}") from None
    return path


def _storage_kind(env: dict[str, str]) -> str:
    kind = env.get("STREETLOOP_STORAGE", "local").strip() or "local"
    if kind not in {"local", "s3"}:
        raise ValueError(f"STREETLOOP_STORAGE must be 'local' or 's3', got {kind!r}")
    if kind == "s3" and not env.get("STREETLOOP_S3_BUCKET", "").strip():
        raise ValueError("STREETLOOP_STORAGE=s3 needs STREETLOOP_S3_BUCKET")
    return kind


# Pillow itself refuses to open an image above ~89.5 MP (Image.MAX_IMAGE_PIXELS) as a
# likely bomb, so a cap above this could never be reached.
_PILLOW_PIXELS = 89_000_000


# The groups of settings read together, as the keyword arguments of Settings they become.
class _PhotoPixels(TypedDict):
    max_image_pixels: int
    max_image_pixels_other: int
    max_request_pixels: int


class _WebhookSettings(TypedDict):
    webhook_allow_hosts: tuple[str, ...]
    webhook_http_hosts: tuple[str, ...]
    webhook_ca_file: Path | None


class _MediaCopySettings(TypedDict):
    media_copy_hosts: tuple[str, ...]
    media_copy_http_hosts: tuple[str, ...]
    media_copy_allow_internal: bool


class _TileSettings(TypedDict):
    tile_url: str | None
    tile_attribution: str
    tile_max_zoom: int


def _photo_pixels(env: dict[str, str]) -> _PhotoPixels:
    camera = _bounded(env, "STREETLOOP_MAX_IMAGE_PIXELS", 50_000_000, 1_000_000, _PILLOW_PIXELS)
    other = _bounded(
        env, "STREETLOOP_MAX_IMAGE_PIXELS_OTHER", min(16_000_000, camera), 100_000, camera
    )
    # At least one photo of the largest size, or such a photo could never be sent.
    per_request = _bounded(
        env, "STREETLOOP_MAX_REQUEST_PIXELS", max(250_000_000, camera), camera, 2_000_000_000
    )
    return {
        "max_image_pixels": camera,
        "max_image_pixels_other": other,
        "max_request_pixels": per_request,
    }


def _trusted_proxies(env: dict[str, str]) -> int | tuple[IPv4Network | IPv6Network, ...]:
    """STREETLOOP_TRUSTED_PROXIES: empty (no proxy: X-Forwarded-For is ignored), a number
    of proxy hops in front of the app, or a comma list of the proxies' addresses/CIDRs."""
    raw = env.get("STREETLOOP_TRUSTED_PROXIES", "").strip()
    if not raw:
        return 0
    if raw.isdigit():
        return _bounded(env, "STREETLOOP_TRUSTED_PROXIES", 0, 0, 10)
    try:
        return tuple(ip_network(part.strip()) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(
            f"STREETLOOP_TRUSTED_PROXIES must be a number of proxy hops or a comma list of "
            f"proxy addresses/CIDRs, got {raw!r}: {exc}"
        ) from None


def _locale(env: dict[str, str]) -> str:
    """STREETLOOP_LOCALE: a BCP 47 language tag (en-GB, fr-CA, ca); the screens' dates and
    numbers follow it, the city's own words are in the apps' strings files."""
    raw = env.get("STREETLOOP_LOCALE", "").strip() or "en-GB"
    if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z]{4})?(-(?:[A-Za-z]{2}|[0-9]{3}))?", raw):
        raise ValueError(
            f"STREETLOOP_LOCALE must be a language tag such as en-GB or ca, got {raw!r}"
        )
    return raw


def _webhook_settings(env: dict[str, str]) -> _WebhookSettings:
    """STREETLOOP_WEBHOOK_*: where webhooks may point besides public https hosts (see
    core/webhook_targets.py), and extra CAs (STREETLOOP_WEBHOOK_CA_FILE, the city's CA for
    all outgoing https: webhooks and copies of linked photos)."""
    import ssl

    from core.webhook_targets import ALLOW_SETTING, HTTP_SETTING, parse_hosts

    ca_file = env.get("STREETLOOP_WEBHOOK_CA_FILE", "").strip()
    if ca_file:
        try:
            ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError):
            raise ValueError(
                f"STREETLOOP_WEBHOOK_CA_FILE: no PEM certificates could be read from {ca_file!r}"
            ) from None
    return {
        "webhook_allow_hosts": parse_hosts(
            ALLOW_SETTING, env.get(ALLOW_SETTING, ""), networks=True
        ),
        "webhook_http_hosts": parse_hosts(HTTP_SETTING, env.get(HTTP_SETTING, ""), networks=False),
        "webhook_ca_file": Path(ca_file) if ca_file else None,
    }


def _media_copy_settings(env: dict[str, str]) -> _MediaCopySettings:
    """STREETLOOP_MEDIA_COPY_*: the hosts whose photo links (a report's media_url) the
    worker copies into our storage (see core/media_links.py); empty copies nothing."""
    from core.media_links import COPY_HOSTS_SETTING, COPY_HTTP_HOSTS_SETTING, COPY_INTERNAL_SETTING
    from core.webhook_targets import parse_hosts

    hosts = parse_hosts(COPY_HOSTS_SETTING, env.get(COPY_HOSTS_SETTING, ""), networks=False)
    http_hosts = parse_hosts(
        COPY_HTTP_HOSTS_SETTING, env.get(COPY_HTTP_HOSTS_SETTING, ""), networks=False
    )
    unlisted = [h for h in http_hosts if h not in hosts]
    if unlisted:
        raise ValueError(
            f"{COPY_HTTP_HOSTS_SETTING} may only name hosts of {COPY_HOSTS_SETTING}; "
            f"not listed there: {', '.join(unlisted)}"
        )
    return {
        "media_copy_hosts": hosts,
        "media_copy_http_hosts": http_hosts,
        "media_copy_allow_internal": _flag(env, COPY_INTERNAL_SETTING),
    }


def _cors_origins(env: dict[str, str]) -> tuple[str, ...]:
    """STREETLOOP_CORS_ORIGINS: the web origins (scheme://host[:port], comma-separated)
    whose pages may write to Open311 and use the staff API from a browser (api/cors.py).
    Open311 reads are open to every origin without it."""
    from urllib.parse import urlsplit

    origins: list[str] = []
    for raw in env.get("STREETLOOP_CORS_ORIGINS", "").split(","):
        value = raw.strip().lower().rstrip("/")
        if not value:
            continue
        if value == "*":
            raise ValueError(
                "STREETLOOP_CORS_ORIGINS lists the origins allowed to write, one by one; "
                "'*' would let any web page use a signed-in user's API"
            )
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number in range
        except ValueError:
            parts = parts._replace(scheme="")
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path
            or parts.query
            or parts.fragment
            or parts.username
            or parts.password
        ):
            raise ValueError(
                f"STREETLOOP_CORS_ORIGINS: {raw.strip()!r} is not an origin like https://www.city.example "
                "(scheme and host, an optional port, no path)"
            )
        # As a browser sends it: no port when it is the scheme's own.
        if parts.port == {"http": 80, "https": 443}[parts.scheme]:
            value = f"{parts.scheme}://{parts.hostname}"
        origins.append(value)
    return tuple(dict.fromkeys(origins))


TILE_ATTRIBUTION = "© OpenStreetMap contributors"
_VECTOR_SUFFIXES = (".pbf", ".mvt")
_RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def tile_kind(url: str) -> str:
    """'vector' or 'raster', from how a tile URL template's path ends."""
    from urllib.parse import urlsplit

    path = urlsplit(url).path.lower()
    return "vector" if path.endswith(_VECTOR_SUFFIXES) else "raster"


def _tile_settings(env: dict[str, str]) -> _TileSettings:
    """STREETLOOP_TILE_URL: a city's own tile server, as a {z}/{x}/{y} URL template of
    vector (.pbf, .mvt) or raster (.png, .jpg, .webp) tiles, used by the maps instead of
    StreetLoop's own basemap; STREETLOOP_TILE_ATTRIBUTION: the credit shown on the maps;
    STREETLOOP_TILE_MAX_ZOOM: the tile server's deepest zoom (default 19 for raster, 14
    for vector tiles, which the maps draw larger beyond it)."""
    from urllib.parse import urlsplit

    url = env.get("STREETLOOP_TILE_URL", "").strip()
    if url:
        parts = urlsplit(url)
        local = not parts.scheme and not parts.netloc and parts.path.startswith("/")
        if not (local or (parts.scheme in ("http", "https") and parts.netloc)):
            raise ValueError(
                f"STREETLOOP_TILE_URL must be an http(s) URL or a path starting with /, got {url!r}"
            )
        if any(slot not in url for slot in ("{z}", "{x}", "{y}")):
            raise ValueError(
                f"STREETLOOP_TILE_URL must have {{z}}, {{x}} and {{y}} in it, got {url!r}"
            )
        if not parts.path.lower().endswith(_VECTOR_SUFFIXES + _RASTER_SUFFIXES):
            raise ValueError(
                "STREETLOOP_TILE_URL must end in .pbf or .mvt (vector tiles) or .png, .jpg, .jpeg "
                f"or .webp (raster tiles), got {url!r}"
            )
    default_zoom = 19 if not url or tile_kind(url) == "raster" else 14
    return {
        "tile_url": url or None,
        "tile_attribution": env.get("STREETLOOP_TILE_ATTRIBUTION", "").strip() or TILE_ATTRIBUTION,
        "tile_max_zoom": _bounded(env, "STREETLOOP_TILE_MAX_ZOOM", default_zoom, 1, 24),
    }


class _ReplicaSettings(TypedDict):
    database_replica_url: str | None
    replica_max_lag_s: float
    replica_check_s: float
    replica_connect_timeout_s: int


def _replica_settings(env: dict[str, str]) -> _ReplicaSettings:
    url = env.get("DATABASE_REPLICA_URL", "").strip()
    return {
        "database_replica_url": normalize_database_url(url) if url else None,
        "replica_max_lag_s": _bounded(env, "STREETLOOP_REPLICA_MAX_LAG_S", 30, 1, 24 * 3600),
        "replica_check_s": _bounded(env, "STREETLOOP_REPLICA_CHECK_S", 5, 1, 300),
        "replica_connect_timeout_s": _bounded(
            env, "STREETLOOP_REPLICA_CONNECT_TIMEOUT_S", 2, 2, 60
        ),
    }


@dataclass(frozen=True)
class Settings:
    database_url: str
    secret_key: str = "dev-only-insecure-key"
    # When set, Open311 callers that send a different jurisdiction_id get a 404.
    jurisdiction_id: str | None = None
    timezone: str = "UTC"
    # BCP 47 tag the screens format dates and numbers in ("en-GB": 2 Dec, 14:30).
    locale: str = "en-GB"
    media_dir: Path = field(default=PROJECT_ROOT / "var" / "media")
    # Absolute base for links we hand to Open311 clients (media_url); empty means
    # "derive from the incoming request".
    public_base_url: str = ""
    token_ttl_s: int = 12 * 3600
    open311_default_days: int = 90
    open311_max_results: int = 1000
    max_upload_bytes: int = 15 * 1024 * 1024
    # Photo decoding caps (see _photo_pixels): per photo from its header, JPEG/HEIC as a
    # 48 MP phone shoots them, other formats (PNG, WebP: where bombs come from) lower;
    # and all the photos of one request together.
    max_image_pixels: int = 50_000_000
    max_image_pixels_other: int = 16_000_000
    max_request_pixels: int = 250_000_000
    # Photos one Open311 report may carry: files (`media`, `photo1`...) and, separately,
    # media_url links. Their bytes together are bounded by the request body's limit
    # (four times max_upload_bytes, api/__init__.py).
    max_report_photos: int = 10
    contact_email: str = "311@example.city"
    # Valhalla tiles built by `streetloop roads build`; None: straight-line travel times.
    road_data_dir: Path | None = None
    detour_factor: float = 1.3
    speed_kmh: float = 30.0
    # Where photos live: "local" (media_dir) or "s3" (bucket below).
    storage: str = "local"
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    # Solver processes per plan (the machine's cores are shared with the web workers).
    solver_workers: int = 2
    # A day of at least this many jobs that separates into independent parts (by skill) is
    # solved part by part, one job per part on any worker (dispatch.parts).
    plan_split_min_jobs: int = 150
    # Share of auto-verifiable completions drawn at random for a supervisor's review.
    audit_sample_rate: float = 0.05
    # A new report at the place of a request fixed this many days ago or less reopens it.
    reopen_window_days: int = 30
    # GeoJSON file of the city's service area; when set it overrides the admin API's
    # polygon and the districts.
    service_area_file: Path | None = None
    # A report this close to the service area counts as inside (the border road).
    service_area_tolerance_m: float = 100.0
    # Outgoing mail for reporters' notifications; no host: e-mails stay in the outbox.
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    mail_from: str = "311@example.city"
    # Weekly shift patterns make the shifts of this many coming days.
    shift_horizon_days: int = 28
    # A plan built during its day starts each crew no earlier than now plus this, so the
    # crew has time to read its route before the first stop.
    plan_lead_minutes: int = 15
    # A crew's GPS fix younger than this says where it is (plans start it there).
    fix_max_age_minutes: int = 15
    # A resident's promised time that slips by more than this is moved, and they are told.
    promise_slip_minutes: int = 30
    # Privacy (retention, core/retention.py); 0 keeps for ever. Crews' GPS fixes are
    # deleted once older than this many days (CitiStat keeps their distances) ...
    retain_tracks_days: int = 90
    # ... and reporters' contact details this many days after their request closed.
    retain_contact_days: int = 365
    # -- worker reliability (issue 11) --
    # A worker without a heartbeat for this long is taken for dead: the jobs it was running
    # are queued again for another worker (procrastinate's heartbeats; it beats every quarter).
    worker_stalled_after_s: int = 60
    # The longest wait between two attempts of a worker to reach a database that went away.
    worker_reconnect_max_s: int = 30
    # A stored photo file with no row this much older than now was left by a process that
    # died before its commit; the sweep removes it (well past any upload's transaction).
    orphan_file_grace_minutes: int = 60
    # libpq's connect_timeout for every connection the processes open: a database host
    # that went away (packets dropped) fails a connection attempt after this long instead
    # of never, so no pool thread waits on it at shutdown.
    db_connect_timeout_s: int = 5
    # -- a read replica for reports (issue 15) --
    # A streaming replica (hot standby) of DATABASE_URL that CitiStat, the open-data export
    # and Open311's request lists read from (api.db.report_session); None: all on the primary.
    database_replica_url: str | None = None
    # Beyond this lag behind the primary, those reads go to the primary (core/replica.py).
    replica_max_lag_s: float = 30.0
    # How long one look at the replica's health and lag is trusted, per process.
    replica_check_s: float = 5.0
    # A replica that does not answer a connection attempt within this is taken for down.
    replica_connect_timeout_s: int = 2
    # -- sign-in limits and the client address they count (issue 11) --
    # Failed sign-ins allowed per account (any address) and per client address (any
    # account) within their windows; beyond, 429 with Retry-After until the oldest ages out.
    sign_in_account_failures: int = 5
    sign_in_account_window_minutes: int = 15
    sign_in_address_failures: int = 100
    sign_in_address_window_minutes: int = 15
    # An address an account signed in from within this many days is exempt from the
    # account's lock (it has a tight limit of its own): a lock set by guesses from
    # elsewhere does not keep a crew out of its yard. 0: every address is locked alike.
    sign_in_known_address_days: int = 30
    # Who may say what the client's address is (X-Forwarded-For): 0 nobody, N hops of
    # proxies, or the proxies' networks. See api.client_address.
    trusted_proxies: int | tuple[IPv4Network | IPv6Network, ...] = 0
    # Webhooks call public https hosts only (core/webhook_targets.py). Exceptions: hosts,
    # addresses and networks (CIDR) they may reach although internal; hosts they may call
    # over plain http; a PEM file of CAs trusted besides the system's, for all outgoing
    # https (webhooks and copies of linked photos, workers/outbound.py).
    webhook_allow_hosts: tuple[str, ...] = ()
    webhook_http_hosts: tuple[str, ...] = ()
    webhook_ca_file: Path | None = None
    # -- linked photos (issue 13) --
    # Hosts whose photo links the worker copies into our storage (https; plain http only
    # for the hosts also in media_copy_http_hosts); empty: links stay links. The addresses
    # they resolve to must be public unless media_copy_allow_internal (dev, tests, a
    # FixMyStreet on the city's own network), which allows loopback and private ones only
    # (never link-local, such as the cloud's metadata service at 169.254.169.254).
    media_copy_hosts: tuple[str, ...] = ()
    media_copy_http_hosts: tuple[str, ...] = ()
    media_copy_allow_internal: bool = False
    # -- the maps' basemap (issue 12) --
    # A city's own tile server ({z}/{x}/{y} template of vector or raster tiles); None: the
    # offline basemap StreetLoop builds from the city's OSM extract (`basemap build`).
    tile_url: str | None = None
    tile_attribution: str = TILE_ATTRIBUTION
    # The deepest zoom of the city's tile server (the maps draw its tiles larger beyond).
    tile_max_zoom: int = 19
    # -- integrators (issue 13) --
    # Web origins whose pages may write to Open311 and call the staff API (api/cors.py).
    cors_origins: tuple[str, ...] = ()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        url = env.get("DATABASE_URL", "").strip()
        if not url:
            raise RuntimeError(
                "DATABASE_URL is not set. `make demo` and `make test` start a local "
                "PostGIS and set it; to use your own, export "
                "DATABASE_URL=postgresql://user:pass@host:5432/dbname"
            )
        tzname = env.get("STREETLOOP_TIMEZONE", "UTC").strip() or "UTC"
        ZoneInfo(tzname)  # fail at start-up, not at the first request
        return cls(
            database_url=normalize_database_url(url),
            secret_key=env.get("STREETLOOP_SECRET_KEY", "").strip() or cls.secret_key,
            jurisdiction_id=env.get("OPEN311_JURISDICTION_ID", "").strip() or None,
            timezone=tzname,
            locale=_locale(env),
            media_dir=Path(
                env.get("STREETLOOP_MEDIA_DIR", "").strip() or PROJECT_ROOT / "var" / "media"
            ),
            public_base_url=env.get("STREETLOOP_PUBLIC_URL", "").strip().rstrip("/"),
            token_ttl_s=_number(env, "STREETLOOP_TOKEN_TTL_S", 12 * 3600),
            max_upload_bytes=_number(env, "STREETLOOP_MAX_UPLOAD_BYTES", 15 * 1024 * 1024),
            **_photo_pixels(env),
            max_report_photos=_bounded(env, "STREETLOOP_MAX_REPORT_PHOTOS", 10, 1, 50),
            contact_email=env.get("STREETLOOP_CONTACT_EMAIL", "").strip() or "311@example.city",
            road_data_dir=Path(env["STREETLOOP_ROAD_DATA"])
            if env.get("STREETLOOP_ROAD_DATA", "").strip()
            else None,
            detour_factor=_number(env, "STREETLOOP_DETOUR_FACTOR", 1.3),
            speed_kmh=_number(env, "STREETLOOP_SPEED_KMH", 30.0),
            solver_workers=_number(env, "STREETLOOP_SOLVER_WORKERS", 2),
            plan_split_min_jobs=_bounded(env, "STREETLOOP_PLAN_SPLIT_MIN_JOBS", 150, 1, 1_000_000),
            storage=_storage_kind(env),
            s3_bucket=env.get("STREETLOOP_S3_BUCKET", "").strip(),
            s3_prefix=env.get("STREETLOOP_S3_PREFIX", "").strip(),
            s3_endpoint_url=env.get("STREETLOOP_S3_ENDPOINT_URL", "").strip() or None,
            audit_sample_rate=_share(env, "STREETLOOP_AUDIT_SAMPLE_RATE", 0.05),
            reopen_window_days=_number(env, "STREETLOOP_REOPEN_WINDOW_DAYS", 30),
            service_area_file=_service_area_file(env),
            service_area_tolerance_m=_metres(env, "STREETLOOP_SERVICE_AREA_TOLERANCE_M", 100.0),
            smtp_host=env.get("STREETLOOP_SMTP_HOST", "").strip(),
            smtp_port=_number(env, "STREETLOOP_SMTP_PORT", 25),
            smtp_user=env.get("STREETLOOP_SMTP_USER", "").strip(),
            smtp_password=env.get("STREETLOOP_SMTP_PASSWORD", ""),
            smtp_starttls=_flag(env, "STREETLOOP_SMTP_STARTTLS"),
            mail_from=env.get("STREETLOOP_MAIL_FROM", "").strip()
            or env.get("STREETLOOP_CONTACT_EMAIL", "").strip()
            or "311@example.city",
            shift_horizon_days=_bounded(env, "STREETLOOP_SHIFT_HORIZON_DAYS", 28, 1, 366),
            plan_lead_minutes=_bounded(env, "STREETLOOP_PLAN_LEAD_MINUTES", 15, 0, 240),
            fix_max_age_minutes=_bounded(env, "STREETLOOP_FIX_MAX_AGE_MINUTES", 15, 1, 24 * 60),
            promise_slip_minutes=_bounded(env, "STREETLOOP_PROMISE_SLIP_MINUTES", 30, 1, 24 * 60),
            # Privacy: 0 = keep for ever; whole city-local days are purged, so even 1 keeps
            # yesterday and today (dispatch reads the last minutes).
            retain_tracks_days=_bounded(env, "STREETLOOP_RETAIN_TRACKS_DAYS", 90, 0, 36500),
            retain_contact_days=_bounded(env, "STREETLOOP_RETAIN_CONTACT_DAYS", 365, 0, 36500),
            # worker reliability (issue 11)
            worker_stalled_after_s=_bounded(env, "STREETLOOP_WORKER_STALLED_AFTER_S", 60, 2, 3600),
            worker_reconnect_max_s=_bounded(env, "STREETLOOP_WORKER_RECONNECT_MAX_S", 30, 1, 600),
            orphan_file_grace_minutes=_bounded(
                env, "STREETLOOP_ORPHAN_FILE_GRACE_MINUTES", 60, 10, 7 * 24 * 60
            ),
            db_connect_timeout_s=_bounded(env, "STREETLOOP_DB_CONNECT_TIMEOUT_S", 5, 1, 60),
            **_replica_settings(env),
            sign_in_account_failures=_bounded(
                env, "STREETLOOP_SIGN_IN_ACCOUNT_FAILURES", 5, 1, 1000
            ),
            sign_in_account_window_minutes=_bounded(
                env, "STREETLOOP_SIGN_IN_ACCOUNT_WINDOW_MINUTES", 15, 1, 24 * 60
            ),
            sign_in_address_failures=_bounded(
                env, "STREETLOOP_SIGN_IN_ADDRESS_FAILURES", 100, 1, 1_000_000
            ),
            sign_in_address_window_minutes=_bounded(
                env, "STREETLOOP_SIGN_IN_ADDRESS_WINDOW_MINUTES", 15, 1, 24 * 60
            ),
            sign_in_known_address_days=_bounded(
                env, "STREETLOOP_SIGN_IN_KNOWN_ADDRESS_DAYS", 30, 0, 365
            ),
            trusted_proxies=_trusted_proxies(env),
            **_webhook_settings(env),
            **_media_copy_settings(env),
            **_tile_settings(env),
            cors_origins=_cors_origins(env),
        )
