"""Benchmark: CitiStat for a whole year of a large city (1,000,000 requests).

Creates a throwaway database on the PostgreSQL server given by --database-url or
$DATABASE_URL (an *admin* URL), migrates it, seeds a year of history with set-based SQL
(generate_series, as bench/open311_requests.py does): requests of 6 service types over
8 districts with realistic closings (exponential times scaled to each SLA, some never
closed), outcomes, duplicates, reopen counts, one completion per crew-closed request
(auto-verified / supervisor-verified / rejected / awaiting review, audit samples), the
on_site → completed work-order events, 12 crews' shifts and one published plan a day
whose stops are the work each crew did that day. Then times `core.citistat.compute`
for the whole year grouped by service type and by week (in process, p50 of --runs),
and the same through HTTP (gunicorn, GET /api/v1/citistat) unless --no-http. Prints
the EXPLAIN (ANALYZE, BUFFERS) of the requests and completions statements. Asserts nothing.

    .venv/bin/python bench/citistat.py [--database-url URL] [--requests 1000000] [--runs 7]
        [--no-http] [--keep] [--existing DBNAME]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.open311_requests import (  # noqa: E402
    SERVICE_TYPES,
    create_database,
    log,
    loopback_admin_url,
    machine,
    migrate,
    release_database,
    start_gunicorn,
    unwind_on_sigterm,
)
from core.settings import libpq_url  # noqa: E402

TZ = "UTC"
CREWS = 12
STOPS_PER_ROUTE = 15


def seed(url: str, n: int, first_day: date, last_day: date) -> dict[str, int]:
    """Reference rows through the ORM, bulk rows with set-based SQL; returns row counts."""
    from core.auth import hash_password
    from core.db import make_engine, make_sessionmaker
    from core.models import Crew, District, ServiceType, User

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
                        keywords=[code],
                    )
                )
            # 8 districts: a 4 x 2 grid over lon 1.42-1.78, lat 42.43-42.65.
            for k in range(8):
                x0, y0 = 1.42 + 0.09 * (k % 4), 42.43 + 0.11 * (k // 4)
                s.add(
                    District(
                        code=f"d{k + 1}",
                        name=f"District {k + 1}",
                        geom=f"SRID=4326;MULTIPOLYGON((({x0} {y0},{x0 + 0.09} {y0},{x0 + 0.09} {y0 + 0.11},"
                        f"{x0} {y0 + 0.11},{x0} {y0})))",
                    )
                )
            pw = hash_password("bench-password")
            for c in range(1, CREWS + 1):
                crew = Crew(
                    id=c, code=f"crew-{c}", name=f"Crew {c}", agency="Public Works", skills=[]
                )
                s.add(crew)
                s.flush()
                s.add(
                    User(
                        email=f"crew{c}@bench.example",
                        name=f"crew {c}",
                        password_hash=pw,
                        role="crew",
                        crew_id=c,
                    )
                )
            s.add(
                User(
                    email="dispatcher@bench.example",
                    name="dispatcher",
                    password_hash=pw,
                    role="dispatcher",
                )
            )
    finally:
        engine.dispose()

    cum, bounds = 0.0, []
    for code, *_rest, share in SERVICE_TYPES:
        cum += share
        bounds.append((code, cum))
    type_case = (
        "CASE "
        + " ".join(
            f"WHEN (hashint4(i) & 1023) / 1024.0 < {b:.4f} THEN (SELECT id FROM service_types WHERE code = '{c}')"
            for c, b in bounds[:-1]
        )
        + f" ELSE (SELECT id FROM service_types WHERE code = '{bounds[-1][0]}') END"
    )
    start = f"'{first_day.isoformat()} 00:00+00'::timestamptz"
    days = (last_day - first_day).days + 1
    statements = [
        "SELECT setseed(0.2026)",
        f"""CREATE TEMP TABLE src AS
            SELECT i, random() AS u_status, random() AS u_open, random() AS ux, random() AS uy, random() AS u_verdict,
                   random() AS u_dur, random() AS u_reopen,
                   date_trunc('second', {start} + interval '{days} days' * random()) AS requested_at,
                   {type_case} AS service_type_id
            FROM generate_series(1, {n}) AS i""",
        """ALTER TABLE src ADD COLUMN sla int, ADD COLUMN closes_at timestamptz, ADD COLUMN status text,
                          ADD COLUMN district_id bigint, ADD COLUMN crew_id int""",
        # Time to close: exponential with mean 0.6 x SLA (about 80 % on time); 4 % never close.
        """UPDATE src SET sla = st.sla_hours,
                  closes_at = CASE WHEN src.u_dur < 0.04 THEN NULL ELSE
                      src.requested_at + make_interval(secs => round(-ln(src.u_dur) * st.sla_hours * 0.6 * 3600)) END,
                  district_id = CASE WHEN src.ux > 0.97 THEN NULL
                      ELSE (SELECT id FROM districts WHERE code = 'd' || (1 + floor(src.ux / 0.97 * 4)::int
                                                                       + 4 * floor(src.uy * 2)::int)) END,
                  crew_id = 1 + src.i % 12
           FROM service_types st WHERE st.id = src.service_type_id""",
        """UPDATE src SET status = CASE
                WHEN closes_at IS NOT NULL AND closes_at < now() THEN CASE
                    WHEN u_status < 0.80 THEN 'fixed' WHEN u_status < 0.88 THEN 'duplicate'
                    WHEN u_status < 0.93 THEN 'not_found' WHEN u_status < 0.97 THEN 'no_action_needed'
                    WHEN u_status < 0.99 THEN 'referred' ELSE 'cancelled' END
                ELSE CASE WHEN u_open < 0.40 THEN 'received' WHEN u_open < 0.70 THEN 'acknowledged'
                    WHEN u_open < 0.85 THEN 'scheduled' WHEN u_open < 0.95 THEN 'in_progress'
                    ELSE 'reopened' END END""",
        """INSERT INTO work_orders (id, service_type_id, status, priority, due_at, skill, minutes_on_site, location,
                                   district_id, crew_id, created_at, updated_at)
           SELECT i, service_type_id,
                  CASE WHEN status IN ('fixed', 'not_found', 'no_action_needed') THEN 'verified'
                       WHEN status IN ('duplicate', 'referred', 'cancelled') THEN 'closed'
                       WHEN status = 'scheduled' THEN 'planned'
                       WHEN status = 'in_progress' THEN 'on_site' ELSE 'new' END,
                  3, requested_at + make_interval(hours => sla), 'any', 30,
                  ST_SetSRID(ST_MakePoint(1.42 + 0.36 * ux, 42.43 + 0.22 * uy), 4326), district_id,
                  CASE WHEN status IN ('fixed', 'not_found', 'no_action_needed', 'in_progress') THEN crew_id END,
                  requested_at, requested_at
           FROM src""",
        """SELECT setval(pg_get_serial_sequence('work_orders', 'id'), (SELECT max(id) FROM work_orders))""",
        # One completion per crew-closed request (id = i), 15 % through a supervisor (a third of
        # those audit samples); rejected earlier tries for 2 %; awaiting review for in_progress.
        """INSERT INTO completions (id, work_order_id, service_type_id, district_id, crew_id, user_id, outcome, verdict,
                                   auto_verdict, audit_sampled, submitted_at, decided_at)
           SELECT i, i, service_type_id, district_id, crew_id,
                  (SELECT id FROM users WHERE crew_id = src.crew_id), status,
                  CASE WHEN u_verdict < 0.85 THEN 'auto_verified' ELSE 'verified' END,
                  CASE WHEN u_verdict < 0.95 THEN 'auto_verified' ELSE 'needs_review' END,
                  u_verdict >= 0.85 AND u_verdict < 0.90,
                  closes_at - interval '15 minutes', closes_at
           FROM src WHERE status IN ('fixed', 'not_found', 'no_action_needed')
           UNION ALL
           SELECT i + 2000000000, i, service_type_id, district_id, crew_id,
                  (SELECT id FROM users WHERE crew_id = src.crew_id), 'fixed', 'rejected',
                  'needs_review', false, closes_at - interval '1 day', closes_at - interval '20 hours'
           FROM src WHERE status = 'fixed' AND u_verdict > 0.98 AND closes_at - interval '1 day' > requested_at
           UNION ALL
           SELECT i, i, service_type_id, district_id, crew_id,
                  (SELECT id FROM users WHERE crew_id = src.crew_id), 'fixed', 'needs_review',
                  'needs_review', false, now() - interval '1 hour', NULL
           FROM src WHERE status = 'in_progress' AND u_verdict < 0.3""",
        # The visit behind each completion: on site 10-60 minutes before it was submitted.
        """UPDATE completions SET completed_at = submitted_at,
                                 arrived_at = submitted_at - make_interval(mins => 10 + (id % 51)::int)""",
        """SELECT setval(pg_get_serial_sequence('completions', 'id'), (SELECT max(id) FROM completions))""",
        """INSERT INTO service_requests (id, public_id, token, service_type_id, description, location, detailed_status,
                                        requested_at, updated_at, closed_at, district_id, duplicate_of_id,
                                        work_order_id, completion_id, reopen_count)
           SELECT i, 'B' || i, md5('bench-token-' || i), service_type_id, 'Benchmark report ' || i,
                  ST_SetSRID(ST_MakePoint(1.42 + 0.36 * ux, 42.43 + 0.22 * uy), 4326), status,
                  requested_at, coalesce(closes_at, requested_at),
                  CASE WHEN status IN ('fixed', 'duplicate', 'not_found', 'no_action_needed', 'referred', 'cancelled')
                       THEN closes_at END,
                  district_id,
                  CASE WHEN (status = 'duplicate' OR u_open > 0.97) AND i > 1 THEN i - 1 END,
                  i,
                  CASE WHEN status IN ('fixed', 'not_found', 'no_action_needed') THEN i END,
                  CASE WHEN status = 'reopened' OR (status = 'fixed' AND u_reopen < 0.03) THEN 1 ELSE 0 END
           FROM src""",
        """SELECT setval(pg_get_serial_sequence('service_requests', 'id'), (SELECT max(id) FROM service_requests))""",
        # The same visits in the work orders' audit trail.
        """INSERT INTO status_events (entity, entity_id, from_status, to_status, actor, actor_user_id, at)
           SELECT 'work_order', c.work_order_id, 'en_route', 'on_site', 'user:crew', c.user_id,
                  c.arrived_at
           FROM completions c
           UNION ALL
           SELECT 'work_order', c.work_order_id, 'on_site', 'completed', 'user:crew', c.user_id, c.submitted_at
           FROM completions c""",
        f"""INSERT INTO shifts (crew_id, starts_at, ends_at)
            SELECT c, d + time '07:00', d + time '15:30'
            FROM generate_series(1, {CREWS}) c,
                 generate_series(date '{first_day}', date '{last_day}', interval '1 day') d""",
        f"""INSERT INTO route_plans (plan_date, scope_key, version, status, time_limit_s, published_at)
            SELECT d::date, '', 1, 'published', 30, d + time '06:00'
            FROM generate_series(date '{first_day}', date '{last_day}', interval '1 day') d""",
        """INSERT INTO plan_routes (plan_id, crew_id, start_at, end_at, drive_s, distance_m)
           SELECT p.id, c, p.plan_date + time '07:00', p.plan_date + time '15:30',
                  3600 + (hashint4((p.id * 100 + c)::int) & 8191),
                  40000
           FROM route_plans p, generate_series(1, 12) c""",
        # The stops: what each crew completed that day (up to 15), plus 2 orders it did not reach.
        f"""INSERT INTO route_stops (route_id, sequence, kind, work_order_id, arrival_at, start_at, end_at)
            SELECT pr.id, x.rn, 'job', x.work_order_id, x.submitted_at, x.submitted_at, x.submitted_at
            FROM (SELECT c.work_order_id, c.crew_id, c.submitted_at, (c.submitted_at AT TIME ZONE '{TZ}')::date AS day,
                         row_number() OVER (PARTITION BY c.crew_id, (c.submitted_at AT TIME ZONE '{TZ}')::date
                                            ORDER BY c.submitted_at, c.id) AS rn
                  FROM completions c WHERE c.verdict <> 'needs_review') x
            JOIN route_plans p ON p.plan_date = x.day
            JOIN plan_routes pr ON pr.plan_id = p.id AND pr.crew_id = x.crew_id
            WHERE x.rn <= {STOPS_PER_ROUTE}
            UNION ALL
            SELECT pr.id, {STOPS_PER_ROUTE} + k, 'job', 1 + (hashint4((pr.id * 10 + k)::int) & 2147483647) % {n},
                   pr.start_at, pr.start_at, pr.start_at
            FROM plan_routes pr, generate_series(1, 2) k""",
        "DROP TABLE src",
    ]
    with psycopg.connect(libpq_url(url)) as conn:
        for sql in statements:
            t0 = time.perf_counter()
            conn.execute(sql)
            log(
                f"  {sql.split()[0]} {sql.split()[2] if len(sql.split()) > 2 else ''}: {time.perf_counter() - t0:.1f} s"
            )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM (ANALYZE)")
        counts = {}
        for table in (
            "service_requests",
            "work_orders",
            "completions",
            "status_events",
            "shifts",
            "route_plans",
            "plan_routes",
            "route_stops",
        ):
            counts[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return counts


def time_compute(
    url: str, first_day: date, last_day: date, group_by: str, runs: int
) -> tuple[list[float], object]:
    from core.db import make_engine, make_sessionmaker
    from reports import citistat

    engine = make_engine(url)
    times, report = [], None
    try:
        sessions = make_sessionmaker(engine)
        for i in range(runs + 1):  # the first run warms the cache and is not counted
            with sessions() as s:
                t0 = time.perf_counter()
                report = citistat.compute(
                    s, start=first_day, end=last_day, group_by=group_by, tz=ZoneInfo(TZ)
                )
                elapsed = (time.perf_counter() - t0) * 1000
            if i:
                times.append(elapsed)
    finally:
        engine.dispose()
    return times, report


def _statements(group_by: str, period, prefix: str):  # noqa: ANN001, ANN202
    """compute()'s statements, each with its parameters."""
    from reports import citistat as cs

    params = {
        "start": period.starts_at,
        "end": period.ends_at,
        "now": datetime.now(UTC),
        "tz": TZ,
        "first_day": period.start,
        "last_day": period.end,
    }
    cohort, cohort_params = cs.cohort_statement(group_by, period, prefix=prefix)
    completions, week_params = cs.completion_statement(group_by, period, prefix=prefix)
    return {
        "requests (packed)": (cohort, cohort_params),
        "completions": (completions, params | week_params),
        "shifts": (
            text(prefix + cs._SHIFT_SQL.format(key=cs._SHIFT_KEYS[group_by] or "NULL::text")),
            params,
        ),
        "drive": (
            text(prefix + cs._DRIVE_SQL.format(key=cs._DRIVE_KEYS[group_by] or "NULL::text")),
            params,
        ),
        "planned-vs-done": (text(prefix + cs._stop_sql(group_by)), params),
    }


# As compute() sets them for its own transaction.
_SETTINGS = (
    "SELECT set_config('jit', 'off', false), set_config('work_mem', '64MB', false), "
    "set_config('parallel_setup_cost', '0', false), set_config('parallel_tuple_cost', '0', false)"
)


def time_statements(url: str, first_day: date, last_day: date, group_by: str) -> dict[str, float]:
    """Each statement of compute() on its own (EXPLAIN ANALYZE execution time, ms). The
    rest of compute()'s time is the transfer of the packed cohort and numpy."""
    from core.db import make_engine
    from reports import citistat as cs

    period = cs.make_period(first_day, last_day, ZoneInfo(TZ))
    engine = make_engine(url)
    out: dict[str, float] = {}
    try:
        with engine.connect() as conn:
            conn.execute(text(_SETTINGS))
            for name, (statement, params) in _statements(
                group_by, period, "EXPLAIN (ANALYZE, FORMAT JSON) "
            ).items():
                plan = conn.execute(statement, params).scalar()
                plan = json.loads(plan) if isinstance(plan, str) else plan
                out[name] = plan[0]["Execution Time"]
    finally:
        engine.dispose()
    return out


def explain(url: str, first_day: date, last_day: date, group_by: str) -> str:
    from core.db import make_engine
    from reports import citistat as cs

    period = cs.make_period(first_day, last_day, ZoneInfo(TZ))
    engine = make_engine(url)
    out = []
    try:
        with engine.connect() as conn:
            conn.execute(text(_SETTINGS))
            for name, (statement, params) in _statements(
                group_by, period, "EXPLAIN (ANALYZE, BUFFERS) "
            ).items():
                if name in ("requests (packed)", "completions"):
                    rows = conn.execute(statement, params).scalars().all()
                    out.append(f"-- {name} (group_by={group_by})\n" + "\n".join(rows))
    finally:
        engine.dispose()
    return "\n\n".join(out)


def time_http(url: str, first_day: date, last_day: date, runs: int) -> dict[str, list[float]]:
    from sqlalchemy import select

    from core.auth import issue_token
    from core.db import make_engine, make_sessionmaker
    from core.models import User

    engine = make_engine(url)
    try:
        with make_sessionmaker(engine).begin() as s:
            user = s.scalar(select(User).where(User.role == "dispatcher"))
            token, _ = issue_token(s, user, 3600)
    finally:
        engine.dispose()
    logdir = Path(tempfile.mkdtemp(prefix="streetloop-bench-"))
    os.environ["STREETLOOP_TIMEZONE"] = TZ
    server = start_gunicorn(url, 1, logdir)
    out: dict[str, list[float]] = {}
    try:
        for group_by in ("service_type", "week"):
            path = f"/api/v1/citistat?from={first_day}&to={last_day}&group_by={group_by}"
            times = []
            for i in range(runs + 1):
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
                t0 = time.perf_counter()
                conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
                resp = conn.getresponse()
                body = resp.read()
                elapsed = (time.perf_counter() - t0) * 1000
                conn.close()
                if resp.status != 200:
                    raise RuntimeError(f"{path}: HTTP {resp.status}: {body[:300]!r}")
                if i:
                    times.append(elapsed)
            out[group_by] = times
    finally:
        server.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="admin URL (default: $DATABASE_URL)",
    )
    p.add_argument("--requests", type=int, default=1_000_000)
    p.add_argument(
        "--runs", type=int, default=7, help="timed runs per grouping after one warm-up (default 7)"
    )
    p.add_argument("--no-http", action="store_true", help="skip the gunicorn round")
    p.add_argument("--keep", action="store_true", help="keep the database (and print its URL)")
    p.add_argument(
        "--existing",
        metavar="DBNAME",
        help="time a database kept by an earlier --keep run (no seeding)",
    )
    args = p.parse_args(argv)
    admin_url = loopback_admin_url(p, args.database_url)
    if not (1000 <= args.requests <= 20_000_000 and 1 <= args.runs <= 100):
        p.error("requests 1000..20000000, runs 1..100")
    unwind_on_sigterm()
    last_day = datetime.now(UTC).date() - timedelta(days=1)
    first_day = last_day - timedelta(days=364)
    db_name = None
    try:
        t0 = time.perf_counter()
        if args.existing:
            url = (
                make_url(admin_url)
                .set(database=args.existing)
                .render_as_string(hide_password=False)
            )
            migrate(url)
            with psycopg.connect(libpq_url(url)) as conn:
                counts = {
                    t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608 - fixed names
                    for t in ("service_requests", "completions", "status_events", "route_stops")
                }
                first_day = conn.execute(
                    "SELECT min(requested_at)::date FROM service_requests"
                ).fetchone()[0]
                last_day = first_day + timedelta(days=364)
        else:
            db_name, url = create_database(admin_url)
            log(f"database {db_name}: migrating")
            migrate(url)
            log(f"seeding {args.requests:,} requests over {first_day} .. {last_day}")
            counts = seed(url, args.requests, first_day, last_day)
            log(f"setup done in {time.perf_counter() - t0:.0f} s: {counts}")

        results = {}
        for group_by in ("service_type", "week"):
            log(f"compute group_by={group_by}: 1 warm-up + {args.runs} timed")
            results[group_by] = time_compute(url, first_day, last_day, group_by, args.runs)
        per_statement = {
            g: time_statements(url, first_day, last_day, g) for g in ("service_type", "week")
        }
        http_times = {} if args.no_http else time_http(url, first_day, last_day, args.runs)

        print()
        print(
            f"CitiStat {first_day} .. {last_day} (365 days), {counts['service_requests']:,} requests, "
            f"{counts['completions']:,} completions, {counts['status_events']:,} status events, "
            f"{counts['route_stops']:,} plan stops"
        )
        print(f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {machine()}")
        print()
        print(
            f"{'group_by':<14} {'rows':>5} {'compute p50 ms':>15} {'min':>8} {'max':>8} {'HTTP p50 ms':>12}"
        )
        for group_by, (times, report) in results.items():
            h = http_times.get(group_by)
            print(
                f"{group_by:<14} {len(report.rows):>5} {statistics.median(times):>15.0f} {min(times):>8.0f} "
                f"{max(times):>8.0f} {statistics.median(h) if h else float('nan'):>12.0f}"
            )
        print()
        print("EXPLAIN ANALYZE execution time per statement (ms):")
        names = list(next(iter(per_statement.values())))
        print(f"{'group_by':<14} " + " ".join(f"{n:>16}" for n in names))
        for g, t in per_statement.items():
            print(f"{g:<14} " + " ".join(f"{t[n]:>16.0f}" for n in names))
        total = results["service_type"][1].total
        print()
        print(
            f"total: received {total.received:,}, closed {total.closed:,}, "
            f"fixed verified {total.closed_fixed_verified:,}, "
            f"on time {total.on_time_rate}, median {total.median_hours_to_close} h, p90 {total.p90_hours_to_close} h, "
            f"reopen {total.reopen_rate}, completions {total.completions:,}, jobs/shift h {total.jobs_per_shift_hour}, "
            f"planned done {total.planned_done_rate}"
        )
        print()
        print(explain(url, first_day, last_day, "service_type"))
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if db_name is not None:
            release_database(admin_url, db_name, args.keep)


if __name__ == "__main__":
    sys.exit(main())
