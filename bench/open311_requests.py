"""Benchmark: GET /open311/v2/requests.{json,xml} returning 1,000 results with 100,000 stored.

Creates a throwaway database on the PostgreSQL server given by --database-url or
$DATABASE_URL (an *admin* URL, e.g. postgresql+psycopg://postgres@127.0.0.1:54329/postgres),
migrates it, bulk-loads N service requests (+ work orders, status events, photos) with
set-based SQL, starts gunicorn on a free loopback port, and times sequential requests
with one keep-alive HTTP client. Prints p50/p95/p99/max per scenario, the server-side
share (from gunicorn's access log, %(D)s), and the main query's EXPLAIN ANALYZE time so
"API overhead vs database time" is visible. Prints numbers; asserts nothing about speed.

    .venv/bin/python bench/open311_requests.py [--database-url URL] [--requests 100000]
        [--iterations 200] [--warmup 20] [--workers 2] [--keep]

The database and gunicorn are removed at the end unless --keep (also on Ctrl-C/errors).
See bench/README.md for the latest numbers.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from core.settings import libpq_url, normalize_database_url  # noqa: E402

EXPECTED_ITEMS = 1000
SCENARIOS: list[tuple[str, str]] = [
    ("default json", "/open311/v2/requests.json"),
    ("extensions=true", "/open311/v2/requests.json?extensions=true"),
    ("xml", "/open311/v2/requests.xml"),
    ("pothole+open", "/open311/v2/requests.json?service_code=pothole&status=open"),
    ("page=50", "/open311/v2/requests.json?page=50&page_size=1000"),
]

# (code, name, group, agency, skill, sla_hours, share of requests)
SERVICE_TYPES = [
    ("pothole", "Pothole", "streets", "Roads and Streets", "asphalt", 72, 0.30),
    ("streetlight", "Street light out", "streets", "Public Lighting", "electrical", 96, 0.20),
    ("graffiti", "Graffiti", "sanitation", "Sanitation", "graffiti", 120, 0.15),
    ("bulk_trash", "Missed bulk-trash pickup", "sanitation", "Sanitation", "bulk_pickup", 48, 0.15),
    ("overflowing_bin", "Overflowing litter bin", "sanitation", "Sanitation", "bins", 24, 0.12),
    ("fallen_tree", "Fallen tree or branch", "parks", "Parks and Trees", "arborist", 12, 0.08),
]


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# -- database ------------------------------------------------------------------------


def create_database(admin_url: str) -> tuple[str, str]:
    admin = make_url(admin_url)
    name = f"streetloop_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(
        libpq_url(admin.render_as_string(hide_password=False)), autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, admin.set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    admin = make_url(admin_url)
    with psycopg.connect(
        libpq_url(admin.render_as_string(hide_password=False)), autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def release_database(admin_url: str, name: str, keep: bool) -> None:
    """End of a run: drop the throwaway database, or (--keep) say where it stays."""
    if keep:
        log(
            f"kept database {name}: {make_url(admin_url).set(database=name).render_as_string(hide_password=False)}"
        )
    else:
        drop_database(admin_url, name)
        log(f"dropped database {name}")


def migrate(url: str) -> None:
    from alembic import command

    from api.cli import alembic_config

    command.upgrade(alembic_config(url), "head")


def seed_reference(url: str) -> None:
    """Service types + attributes and an API key, through the project's own models."""
    from core.auth import create_api_key
    from core.db import make_engine, make_sessionmaker
    from core.lifecycle import Actor
    from core.models import ServiceAttribute, ServiceType

    engine = make_engine(url)
    try:
        with make_sessionmaker(engine).begin() as s:
            for code, name, group, agency, skill, sla, _share in SERVICE_TYPES:
                s.add(
                    ServiceType(
                        code=code,
                        name=name,
                        group=group,
                        agency=agency,
                        skill=skill,
                        sla_hours=sla,
                        minutes_on_site=30,
                        description=f"{name} (benchmark service type).",
                        keywords=[code, group],
                        attributes=[
                            ServiceAttribute(
                                code="size",
                                datatype="singlevaluelist",
                                required=True,
                                order=1,
                                description="How big is it?",
                                values=[
                                    {"key": "small", "name": "Small"},
                                    {"key": "large", "name": "Large"},
                                ],
                            ),
                            ServiceAttribute(
                                code="notes", datatype="text", order=2, description="Anything else?"
                            ),
                        ],
                    )
                )
            create_api_key(s, "bench client", key="bench-api-key", actor=Actor.cli("bench"))
    finally:
        engine.dispose()


def bulk_load(url: str, n: int) -> dict[str, int]:
    """N requests (+ one work order each, public status events, some photos), set-based."""
    cum, bounds = 0.0, []
    for code, *_rest, share in SERVICE_TYPES:
        cum += share
        bounds.append((code, cum))
    # service type chosen by a hash of i so `service_code=pothole` is spread over time.
    type_case = (
        "CASE "
        + " ".join(
            f"WHEN (hashint4(i) & 1023) / 1024.0 < {b:.4f} THEN (SELECT id FROM service_types WHERE code = '{c}')"
            for c, b in bounds[:-1]
        )
        + f" ELSE (SELECT id FROM service_types WHERE code = '{bounds[-1][0]}') END"
    )
    statements = [
        "SELECT setseed(0.311)",
        # u: status draw, requested_at spread evenly over the last 80 days (newest = highest id).
        f"""CREATE TEMP TABLE bench_src AS
            SELECT i, random() AS u, random() AS ux, random() AS uy,
                   now() - interval '80 days' * (({n} - i)::float8 / {n}) - interval '1 second' AS requested_at,
                   {type_case} AS service_type_id
            FROM generate_series(1, {n}) AS i""",
        """ALTER TABLE bench_src ADD COLUMN detailed_status text""",
        """UPDATE bench_src SET detailed_status = CASE
                WHEN u < 0.70 THEN 'received' WHEN u < 0.77 THEN 'acknowledged' WHEN u < 0.81 THEN 'scheduled'
                WHEN u < 0.84 THEN 'in_progress' WHEN u < 0.85 THEN 'reopened' WHEN u < 0.95 THEN 'fixed'
                WHEN u < 0.97 THEN 'duplicate' WHEN u < 0.985 THEN 'no_action_needed' ELSE 'not_found' END""",
        """INSERT INTO work_orders (id, service_type_id, status, priority, due_at, skill, minutes_on_site,
                                   location, address, created_at, updated_at)
           SELECT b.i, b.service_type_id,
                  CASE WHEN b.detailed_status IN ('fixed', 'no_action_needed', 'not_found', 'duplicate') THEN 'closed'
                       WHEN b.detailed_status = 'scheduled' THEN 'planned'
                       WHEN b.detailed_status = 'in_progress' THEN 'on_site' ELSE 'new' END,
                  1 + (b.i % 5), b.requested_at + make_interval(hours => st.sla_hours), st.skill, st.minutes_on_site,
                  ST_SetSRID(ST_MakePoint(1.42 + 0.36 * b.ux, 42.43 + 0.22 * b.uy), 4326),
                  'Carrer ' || (b.i % 350) || ', ' || (1 + b.i % 120), b.requested_at, b.requested_at
           FROM bench_src b JOIN service_types st ON st.id = b.service_type_id""",
        """SELECT setval(pg_get_serial_sequence('work_orders', 'id'), (SELECT max(id) FROM work_orders))""",
        # A request is `fixed` only with the verified completion behind it (a CHECK says so).
        """INSERT INTO crews (code, name, agency) VALUES ('bench-crew', 'Bench crew', 'Public Works')""",
        """INSERT INTO users (email, name, password_hash, role, crew_id)
           SELECT 'bench-crew@bench', 'Bench crew', 'x', 'crew', id FROM crews WHERE code = 'bench-crew'""",
        """UPDATE work_orders w SET status = 'verified' FROM bench_src b
           WHERE b.i = w.id AND b.detailed_status = 'fixed'""",
        """INSERT INTO completions (id, work_order_id, service_type_id, crew_id, user_id, outcome,
                                   verdict, auto_verdict, submitted_at)
           SELECT b.i, b.i, b.service_type_id, u.crew_id, u.id, 'fixed', 'auto_verified',
                  'auto_verified', b.requested_at + interval '19 hours'
           FROM bench_src b CROSS JOIN users u WHERE u.email = 'bench-crew@bench' AND b.detailed_status = 'fixed'""",
        """SELECT setval(pg_get_serial_sequence('completions', 'id'),
                         (SELECT coalesce(max(id), 1) FROM completions))""",
        """INSERT INTO service_requests (id, public_id, token, service_type_id, description, attributes, location,
                                        address, zipcode, media_url, channel, api_key_id, detailed_status,
                                        status_notes, requested_at, updated_at, expected_at, closed_at,
                                        duplicate_of_id, work_order_id, completion_id)
           SELECT b.i, b.i::text, md5('bench-token-' || b.i), b.service_type_id,
                  'Reported via the benchmark, item ' || b.i || '. ' ||
                  repeat('Details about the problem. ', 1 + b.i % 4),
                  '{"size": "small"}'::jsonb,
                  ST_SetSRID(ST_MakePoint(1.42 + 0.36 * b.ux, 42.43 + 0.22 * b.uy), 4326),
                  'Carrer ' || (b.i % 350) || ', ' || (1 + b.i % 120),
                  'AD' || (100 + 100 * (b.i % 7)),
                  CASE WHEN b.i % 10 = 0 THEN '/media/public/bench/' || b.i || '.jpg' END,
                  'open311', (SELECT min(id) FROM api_keys), b.detailed_status,
                  CASE WHEN b.detailed_status IN ('fixed', 'no_action_needed', 'not_found', 'duplicate')
                       THEN 'Closed: ' || b.detailed_status END,
                  b.requested_at,
                  b.requested_at + interval '2 hours' * (b.u * 10),
                  b.requested_at + make_interval(hours => st.sla_hours),
                  CASE WHEN b.detailed_status IN ('fixed', 'no_action_needed', 'not_found', 'duplicate')
                       THEN b.requested_at + interval '20 hours' END,
                  CASE WHEN b.detailed_status = 'duplicate' AND b.i > 1 THEN b.i - 1 END,
                  b.i,
                  CASE WHEN b.detailed_status = 'fixed' THEN b.i END
           FROM bench_src b JOIN service_types st ON st.id = b.service_type_id""",
        """SELECT setval(pg_get_serial_sequence('service_requests', 'id'), (SELECT max(id) FROM service_requests))""",
        # Public timeline: 'received' for every request, one more for those that moved on.
        """INSERT INTO status_events (entity, entity_id, from_status, to_status, actor, at, note, public)
           SELECT 'service_request', b.i, NULL, 'received', 'open311:bench client', b.requested_at,
                  'Thank you, your report was received.', true
           FROM bench_src b
           UNION ALL
           SELECT 'service_request', b.i, 'received', b.detailed_status, 'system',
                  b.requested_at + interval '3 hours', 'Status changed to ' || b.detailed_status || '.', true
           FROM bench_src b WHERE b.detailed_status <> 'received'
           UNION ALL
           SELECT 'work_order', b.i, NULL, 'new', 'system', b.requested_at, NULL, false
           FROM bench_src b""",
        """INSERT INTO photos (kind, state, service_request_id, sha256, content_type, byte_size, width, height,
                              original_key, public_key, thumbnail_key, created_at)
           SELECT 'report', 'ready', b.i, md5(b.i::text) || md5(b.i::text), 'image/jpeg', 250000, 1600, 1200,
                  'private/photos/' || b.i || '.jpg', 'public/' || b.i || '.jpg', 'thumbs/' || b.i || '.jpg',
                  b.requested_at
           FROM bench_src b WHERE b.i % 20 = 0""",
        "DROP TABLE bench_src",
    ]
    with psycopg.connect(libpq_url(url)) as conn:
        for sql in statements:
            conn.execute(sql)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM (ANALYZE)")
        counts = {}
        for table in ("service_requests", "work_orders", "status_events", "photos"):
            counts[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return counts


# -- the SQL alone -------------------------------------------------------------------


@dataclass
class SqlTiming:
    explain_ms: float  # EXPLAIN ANALYZE "Execution Time"
    planning_ms: float
    fetch_p50_ms: float  # SQLAlchemy execute().all() of the same statement, client side
    plan_top: str


def _main_statement(scenario: str):  # noqa: ANN202
    """The statement get_requests() builds for a scenario (core.public_requests.page_query)."""
    from core.public_requests import RequestFilter, page_query

    start = datetime.now(UTC) - timedelta(days=90)
    if scenario == "pothole+open":
        return page_query(RequestFilter(start=start, service_codes=("pothole",), status="open"))
    return page_query(RequestFilter(start=start, page=50 if scenario == "page=50" else 1))


def time_sql(url: str, scenarios: list[str], repeats: int = 15) -> dict[str, SqlTiming]:
    from core.db import make_engine

    engine = make_engine(url)
    out: dict[str, SqlTiming] = {}
    try:
        with engine.connect() as conn:
            for name in scenarios:
                stmt = _main_statement(name)
                compiled = stmt.compile(
                    dialect=engine.dialect, compile_kwargs={"render_postcompile": True}
                )
                sql = str(compiled)
                params = compiled.params
                fetch = []
                for _ in range(repeats):  # also warms the cache and the plan before EXPLAIN
                    t0 = time.perf_counter()
                    rows = conn.execute(stmt).all()
                    fetch.append((time.perf_counter() - t0) * 1000)
                if name == "default json" and len(rows) != EXPECTED_ITEMS:
                    raise RuntimeError(
                        f"main query returned {len(rows)} rows, expected {EXPECTED_ITEMS}"
                    )
                plan = conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params
                ).scalar()
                if isinstance(plan, str):
                    plan = json.loads(plan)
                top = plan[0]
                node = top["Plan"]
                shape = []
                while node is not None and len(shape) < 6:
                    shape.append(
                        node["Node Type"]
                        + (f" on {node['Relation Name']}" if "Relation Name" in node else "")
                        + (f" using {node['Index Name']}" if "Index Name" in node else "")
                    )
                    kids = node.get("Plans") or []
                    node = kids[0] if kids else None
                out[name] = SqlTiming(
                    top["Execution Time"],
                    top["Planning Time"],
                    statistics.median(fetch),
                    " > ".join(shape),
                )
                conn.rollback()
    finally:
        engine.dispose()
    return out


# -- the server ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    access_log: Path
    stderr_log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # gunicorn master stops its own workers
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_gunicorn(url: str, workers: int, logdir: Path, root: Path = ROOT) -> Server:
    """gunicorn serving the app of the checkout `root` (this one unless told)."""
    port = free_port()
    gunicorn = root / ".venv" / "bin" / "gunicorn"
    if not gunicorn.exists():
        gunicorn = Path(sys.executable).with_name("gunicorn")
    access_log, stderr_log = logdir / "access.log", logdir / "gunicorn.err"
    env = dict(os.environ, DATABASE_URL=url)
    cmd = [
        # As scripts/demo.sh runs it: 1,000 service_request_id values exceed the default request line.
        str(gunicorn),
        "-w",
        str(workers),
        "--limit-request-line",
        "0",
        "-b",
        f"127.0.0.1:{port}",
        "--access-logfile",
        str(access_log),
        # %(D)s: microseconds the worker spent on the request (app + writing the response).
        "--access-logformat",
        "%(m)s %(U)s?%(q)s %(s)s %(B)s %(D)s",
        "api:create_app()",
    ]
    err = open(stderr_log, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=err, stderr=subprocess.STDOUT, start_new_session=True
    )
    server = Server(proc, port, access_log, stderr_log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"gunicorn exited with {proc.returncode}:\n{stderr_log.read_text()[-3000:]}"
            )
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/open311/v2/services.json")
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError("gunicorn did not become ready within 60 s")


# -- the client ------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    path: str
    client_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    size: int = 0


def count_items(path: str, body: bytes) -> int:
    if ".xml" in path:
        return len(ET.fromstring(body).findall("request"))
    return len(json.loads(body))


def run_scenario(
    port: int, name: str, path: str, iterations: int, warmup: int, access_log: Path
) -> Result:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    result = Result(name, path)
    log_offset = access_log.stat().st_size if access_log.exists() else 0
    try:
        for i in range(warmup + iterations):
            t0 = time.perf_counter()
            conn.request("GET", path, headers={"Accept-Encoding": "identity"})
            resp = conn.getresponse()
            body = resp.read()
            elapsed = (time.perf_counter() - t0) * 1000
            if resp.status != 200:
                raise RuntimeError(f"{path}: HTTP {resp.status}: {body[:500]!r}")
            if i == 0 or i == warmup:  # validate once per phase; parsing is not timed
                items = count_items(path, body)
                if items != EXPECTED_ITEMS:
                    raise RuntimeError(f"{path}: expected {EXPECTED_ITEMS} items, got {items}")
            if i >= warmup:
                result.client_ms.append(elapsed)
                result.size = len(body)
    finally:
        conn.close()
    # Server-side time from the access log: the last `iterations` lines for this path.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(access_log, "rb") as fh:
            fh.seek(log_offset)
            lines = [ln.decode().split() for ln in fh.read().splitlines() if ln.strip()]
        lines = [ln for ln in lines if len(ln) >= 5 and ln[0] == "GET"]
        if len(lines) >= warmup + iterations:
            result.server_ms = [int(ln[-1]) / 1000 for ln in lines[-iterations:]]
            break
        time.sleep(0.1)
    return result


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# -- main ------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def loopback_admin_url(p: argparse.ArgumentParser, raw: str | None) -> str:
    """The admin URL a benchmark may use: given, and on this machine (it creates and drops
    databases there)."""
    if not raw:
        p.error("give --database-url or set DATABASE_URL (admin URL, e.g. .../postgres)")
    admin_url = normalize_database_url(raw)
    host = make_url(admin_url).host or "localhost"
    if host not in {"127.0.0.1", "localhost", "::1"} and not host.startswith("/"):
        p.error(f"refusing a non-loopback database host {host!r}")
    return admin_url


def unwind_on_sigterm() -> None:
    """Ctrl-C and SIGTERM both unwind through the callers' finally blocks (their cleanup)."""

    def _on_term(signum, frame):  # noqa: ANN001, ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_term)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="admin URL of the PostgreSQL server (default: $DATABASE_URL)",
    )
    p.add_argument(
        "--requests", type=int, default=100_000, help="service requests to store (default 100000)"
    )
    p.add_argument(
        "--iterations", type=int, default=200, help="timed requests per scenario (default 200)"
    )
    p.add_argument(
        "--warmup", type=int, default=20, help="untimed requests per scenario first (default 20)"
    )
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    p.add_argument(
        "--keep", action="store_true", help="keep the database (and print its URL) at the end"
    )
    args = p.parse_args(argv)
    admin_url = loopback_admin_url(p, args.database_url)
    if args.requests < EXPECTED_ITEMS * 50:
        p.error(
            f"--requests must be at least {EXPECTED_ITEMS * 50} (the page=50 scenario needs 50,000 rows)"
        )
    if not (
        1 <= args.iterations <= 100_000 and 0 <= args.warmup <= 10_000 and 1 <= args.workers <= 64
    ):
        p.error("iterations 1..100000, warmup 0..10000, workers 1..64")
    unwind_on_sigterm()

    db_name: str | None = None
    server: Server | None = None
    logdir = Path(tempfile.mkdtemp(prefix="streetloop-bench-"))
    try:
        t0 = time.perf_counter()
        db_name, url = create_database(admin_url)
        log(f"database {db_name}: migrating")
        migrate(url)
        seed_reference(url)
        log(f"loading {args.requests:,} requests")
        counts = bulk_load(url, args.requests)
        log(f"setup done in {time.perf_counter() - t0:.1f} s: {counts}")

        sql = time_sql(
            url,
            [name for name, _ in SCENARIOS if name in {"default json", "pothole+open", "page=50"}],
        )

        log(f"starting gunicorn -w {args.workers}")
        server = start_gunicorn(url, args.workers, logdir)
        results = []
        for name, path in SCENARIOS:
            log(f"{name}: {args.warmup} warm-up + {args.iterations} timed")
            results.append(
                run_scenario(
                    server.port, name, path, args.iterations, args.warmup, server.access_log
                )
            )

        print()
        print(
            f"GET /open311/v2/requests — {counts['service_requests']:,} stored, {EXPECTED_ITEMS:,} returned, "
            f"gunicorn -w {args.workers} (sync), sequential keep-alive client on 127.0.0.1"
        )
        print(f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {machine()}")
        print()
        hdr = (
            f"{'scenario':<16} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} "
            f"{'bytes':>9} {'srv p50':>8} {'srv share':>9}"
        )
        print(hdr)
        print("-" * len(hdr))
        for r in results:
            srv50 = pct(r.server_ms, 0.5)
            share = srv50 / pct(r.client_ms, 0.5) if r.server_ms else float("nan")
            print(
                f"{r.name:<16} {len(r.client_ms):>4} {pct(r.client_ms, 0.5):>8.1f} {pct(r.client_ms, 0.95):>8.1f} "
                f"{pct(r.client_ms, 0.99):>8.1f} {max(r.client_ms):>8.1f} {r.size:>9,} {srv50:>8.1f} {share:>9.0%}"
            )
        print()
        print("SQL alone (main query of get_requests, same statement the route builds):")
        print(
            f"{'scenario':<16} {'EXPLAIN exec ms':>15} {'plan ms':>8} {'fetch p50 ms':>13} "
            f"{'API p50 ms':>11} {'API/exec':>9} {'API/fetch':>10}"
        )
        by_name = {r.name: r for r in results}
        for name, t in sql.items():
            api50 = pct(by_name[name].client_ms, 0.5)
            print(
                f"{name:<16} {t.explain_ms:>15.2f} {t.planning_ms:>8.2f} {t.fetch_p50_ms:>13.2f} {api50:>11.1f} "
                f"{api50 / t.explain_ms:>8.1f}x {api50 / t.fetch_p50_ms:>9.1f}x"
            )
        print()
        for name, t in sql.items():
            print(f"  plan[{name}]: {t.plan_top}")
        print()
        print(
            "fetch = SQLAlchemy conn.execute(stmt).all() in this process (query + transfer + Row building);"
        )
        print(
            "srv = gunicorn access-log %(D)s (worker time incl. writing the body); share = srv p50 / client p50."
        )
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if server is not None:
            server.stop()
            if server.proc.returncode not in (0, None, -signal.SIGTERM):
                log(f"gunicorn exit {server.proc.returncode}; log: {server.stderr_log}")
        if db_name is not None:
            release_database(admin_url, db_name, args.keep)


if __name__ == "__main__":
    sys.exit(main())
