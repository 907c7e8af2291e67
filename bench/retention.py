"""Benchmark: the retention purge (`core.retention`) on a city's history, and CitiStat's
gps_km before and after it.

Creates a throwaway database on the PostgreSQL server given by --database-url or
$DATABASE_URL (an *admin* URL, loopback only), migrates it and seeds, with set-based SQL:
--crews crews with one GPS fix every 20 s over 8 hours a day for --days days, and
--requests requests closed 400 to 800 days ago and as many received in the last 300 days
(closed or not), each with the reporter's contact details and one e-mail in the outbox. Then, in one run, side by side:

- CitiStat gps_km (group_by=crew, the whole period) on the raw fixes;
- the first purge (tracks kept 90 days, contacts 365 days after closing): everything old;
- CitiStat gps_km again, now mostly from the per-day distances the purge kept (the
  figures are compared too: they must be equal);
- a second purge right after (the hourly job's usual run: nothing left to do, a year of
  recent requests' details to keep).

    .venv/bin/python bench/retention.py [--database-url URL] [--crews 12] [--days 120]
        [--requests 100000] [--keep]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from bench.open311_requests import (  # noqa: E402
    create_database,
    log,
    loopback_admin_url,
    machine,
    migrate,
    release_database,
    unwind_on_sigterm,
)

TZ = ZoneInfo("Europe/Andorra")


def seed(engine, crews: int, days: int, requests: int, today: date) -> dict[str, int]:  # noqa: ANN001
    with engine.begin() as c:
        c.execute(
            text("""INSERT INTO service_types (code, name, agency, sla_hours, skill, minutes_on_site)
                          VALUES ('pothole', 'Pothole', 'Roads', 72, 'asphalt', 30)""")
        )
        c.execute(
            text(
                "INSERT INTO crews (code, name, agency) SELECT 'c' || i, 'Crew ' || i, 'Roads' "
                "FROM generate_series(1, :n) i"
            ),
            {"n": crews},
        )
        # A crew drives around the city centre: a random walk would do no better for timing.
        c.execute(
            text("""
            INSERT INTO position_pings (crew_id, at, location, accuracy_m)
            SELECT cr.id, d + time '07:00' + s * interval '20 seconds',
                   ST_SetSRID(ST_MakePoint(1.52 + 0.01 * sin(s / 50.0 + cr.id),
                                           42.50 + 0.01 * cos(s / 70.0 + cr.id)), 4326), 8
            FROM crews cr, generate_series(CAST(:first AS date), CAST(:last AS date), interval '1 day') d,
                 generate_series(0, 8 * 180 - 1) s
        """),
            {"first": today - timedelta(days=days), "last": today},
        )
        c.execute(
            text("""
            INSERT INTO service_requests (public_id, token, service_type_id, description, detailed_status,
                                          requested_at, updated_at, closed_at)
            SELECT 'B' || i, md5('tok' || i), 1, 'report ' || i, 'not_found',
                   now() - interval '800 days' + i * interval '5 minutes',
                   now() - interval '799 days' + i * interval '5 minutes',
                   now() - interval '799 days' + (i % 100000) * interval '5 minutes'
            FROM generate_series(1, :n) i
            UNION ALL
            SELECT 'N' || i, md5('new' || i), 1, 'report ' || i,
                   CASE WHEN i % 3 = 0 THEN 'received' ELSE 'not_found' END,
                   now() - interval '300 days' + i * (interval '300 days' / :n),
                   now() - interval '300 days' + i * (interval '300 days' / :n),
                   CASE WHEN i % 3 = 0 THEN NULL ELSE now() - interval '299 days' + i * (interval '299 days' / :n) END
            FROM generate_series(1, :n) i
        """),
            {"n": requests},
        )
        c.execute(
            text("""INSERT INTO request_contacts (request_id, email, first_name, phone)
                          SELECT id, 'r' || id || '@example.org', 'Name', '+376 ' || id FROM service_requests""")
        )
        c.execute(
            text("""INSERT INTO status_events (entity, entity_id, from_status, to_status, actor, at, public)
                          SELECT 'service_request', id, 'received', detailed_status, 'system',
                                 coalesce(closed_at, requested_at), true FROM service_requests""")
        )
        c.execute(
            text("""INSERT INTO notifications (status_event_id, service_request_id, kind, channel, recipient, state)
                          SELECT e.id, e.entity_id, 'closed', 'email', 'r' || e.entity_id || '@example.org', 'sent'
                          FROM status_events e""")
        )
        c.execute(text("ANALYZE"))
        return {
            t: c.scalar(text(f"SELECT count(*) FROM {t}"))
            for t in ("position_pings", "service_requests", "notifications")
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    p.add_argument("--crews", type=int, default=12)
    p.add_argument("--days", type=int, default=120)
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    admin_url = loopback_admin_url(p, args.database_url)
    unwind_on_sigterm()

    from core.db import make_engine, make_sessionmaker
    from core.retention import purge
    from reports import citistat

    name, url = create_database(admin_url)
    engine = make_engine(url)
    try:
        migrate(url)
        today = datetime.now(TZ).date()
        t0 = time.perf_counter()
        counts = seed(engine, args.crews, args.days, args.requests, today)
        log(f"seeded {counts} in {time.perf_counter() - t0:.1f} s")
        sessions = make_sessionmaker(engine)

        def gps() -> tuple[float, dict]:
            with sessions() as s:
                t = time.perf_counter()
                rep = citistat.compute(
                    s, start=today - timedelta(days=args.days), end=today, group_by="crew", tz=TZ
                )
                return time.perf_counter() - t, {r.group: r.gps_km for r in rep.rows} | {
                    "total": rep.total.gps_km
                }

        before_s, before = gps()
        t = time.perf_counter()
        first = purge(sessions, tracks_days=90, contact_days=365, tz=TZ)
        first_s = time.perf_counter() - t
        after_s, after = gps()
        t = time.perf_counter()
        second = purge(sessions, tracks_days=90, contact_days=365, tz=TZ)
        second_s = time.perf_counter() - t
        with engine.connect() as c:
            left = c.scalar(text("SELECT count(*) FROM position_pings"))

        print(f"machine: {machine()}")
        print(
            f"history: {counts['position_pings']:,} GPS fixes of {args.crews} crews over {args.days + 1} days; "
            f"{counts['service_requests']:,} requests with contact details, half closed 400-800 days ago, "
            f"half received in the last 300 days"
        )
        print(
            f"citistat crew report, raw fixes:           {before_s * 1000:8.0f} ms  total gps_km {before['total']}"
        )
        print(
            f"first purge (everything old):              {first_s * 1000:8.0f} ms  {first.fixes_deleted:,} fixes, "
            f"{len(first.requests):,} requests' contacts"
        )
        print(
            f"citistat crew report, after the purge:     {after_s * 1000:8.0f} ms  total gps_km {after['total']}  "
            f"(figures equal: {before == after}); {left:,} fixes left"
        )
        print(
            f"second purge (the hourly run, no backlog): {second_s * 1000:8.0f} ms  {second.fixes_deleted} fixes, "
            f"{len(second.requests)} requests"
        )
        return 0
    finally:
        engine.dispose()
        release_database(admin_url, name, args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
