"""Crew phone API speed: GPS ping ingest rate, route feed latency with 40 stops, completion latency.

    python bench/crew_phone.py [--database-url URL] [--batches 60] [--batch-size 1000] [--clients 2]
                               [--iterations 200] [--completions 40] [--compare-tree DIR]

Throwaway database and gunicorn (-w 2) on 127.0.0.1, removed at the end; numbers are
printed, never asserted. Ping batches are 1,000 fixes each by default, as a phone sends
after a stretch without signal (the API takes up to core.field.MAX_PINGS_PER_BATCH).

Ingest is measured twice. Through HTTP: two runs of --batches batches, with the CPU each
tier spent (this client, the gunicorn workers, the PostgreSQL backends), the request
bodies encoded before the clock starts; with --compare-tree, a second gunicorn serving
another checkout (say `git archive` of an older commit) takes turns with this one's
(A B B A) against the same database. And in the database alone, where
`core.field.ingest_positions` (COPY into a staging table, then one INSERT) runs side by
side with the statement it replaced (row values sent as arrays and unnested), batch for
batch in turn, each batch its own transaction as in the API.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.open311_requests import create_database, drop_database, log, migrate, pct, start_gunicorn  # noqa: E402
from core.settings import normalize_database_url  # noqa: E402

LON, LAT = 1.5243707, 42.5080426
TZ = ZoneInfo("UTC")


def seed(url: str, completions: int) -> dict[str, str]:
    """A crew with a token and a published 40-stop route for today, built through the project's code."""
    from core.auth import hash_password, issue_token
    from core.db import make_engine, make_sessionmaker
    from core.intake import NewRequest, submit_request
    from core.lifecycle import Actor
    from core.models import Crew, CrewDay, Depot, PlanRoute, RoutePlan, RouteStop, ServiceType, User
    from core.spatial import point
    from core.workorders import change_status

    engine = make_engine(url)
    out: dict[str, str] = {}
    try:
        with make_sessionmaker(engine).begin() as s:
            depot = Depot(code="yard", name="Yard", agency="Roads", location=point(LON, LAT))
            st = ServiceType(
                code="pothole",
                name="Pothole",
                agency="Roads",
                sla_hours=72,
                skill="asphalt",
                minutes_on_site=10,
            )
            crew = Crew(
                code="pothole-1",
                name="Pothole crew",
                agency="Roads",
                skills=["asphalt"],
                depot=depot,
            )
            s.add_all([depot, st, crew])
            s.flush()
            user = User(
                email="pothole-1@bench",
                name="crew",
                password_hash=hash_password("x"),
                role="crew",
                crew_id=crew.id,
            )
            s.add(user)
            s.flush()
            token, _ = issue_token(s, user, 3600)
            out["token"] = token
            actor = Actor(label="bench")
            plan = RoutePlan(
                plan_date=datetime.now(TZ).date(),
                version=1,
                status="published",
                time_limit_s=30,
                stats={"feasible": True},
            )
            s.add(plan)
            s.flush()
            midnight = datetime.combine(plan.plan_date, dtime(0), TZ)
            pr = PlanRoute(
                plan=plan,
                crew_id=crew.id,
                start_at=midnight + timedelta(hours=7),
                end_at=midnight + timedelta(hours=15),
                drive_s=3600,
                distance_m=30000,
                geometry="SRID=4326;LINESTRING(1.52 42.50, 1.53 42.51)",
            )
            s.add(pr)
            s.add(
                CrewDay(crew_id=crew.id, plan_date=plan.plan_date, plan_id=plan.id)
            )  # the plan holds the crew's day
            extra: list[str] = []
            for k in range(40 + completions):
                res = submit_request(
                    s,
                    NewRequest(
                        service_code="pothole",
                        lat=LAT + k * 0.002,
                        lon=LON,
                        description=f"hole {k}",
                    ),
                    actor=actor,
                )
                s.flush()
                if (
                    k >= 40
                ):  # completed later in the benchmark; dispatched after the feed is measured at 40 stops
                    extra.append(f"{res.work_order.id}:{LAT + k * 0.002}")
                    continue
                change_status(s, res.work_order, "dispatched", actor=actor, crew_id=crew.id)
                at = midnight + timedelta(hours=7, minutes=12 * k)
                pr.stops.append(
                    RouteStop(
                        sequence=k + 1,
                        kind="job",
                        work_order_id=res.work_order.id,
                        arrival_at=at,
                        start_at=at,
                        end_at=at + timedelta(minutes=10),
                    )
                )
            out["complete"] = ",".join(extra)
    finally:
        engine.dispose()
    return out


def ping_batch(base: datetime, b: int, size: int) -> list[dict[str, Any]]:
    """Batch `b` of a phone's track: one fix a second, as the phone sends it."""
    return [
        {
            "time": (base + timedelta(seconds=b * size + k)).isoformat(),
            "lat": LAT + k * 1e-6,
            "lon": LON,
            "accuracy": 6.0,
            "speed": 4.2,
            "heading": 180.0,
        }
        for k in range(size)
    ]


def bodies(start: datetime, batches: int, size: int) -> list[str]:
    """The requests' JSON, encoded before the clock starts: a phone's work, not the server's."""
    return [json.dumps({"pings": ping_batch(start, b, size)}) for b in range(batches)]


def ingest(
    port: int, token: str, batches: list[str], clients: int, size: int
) -> tuple[float, list[float]]:
    """Post the batches of `size` pings each, from `clients` connections at once."""
    latencies: list[float] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        try:
            send(c)
        except BaseException as exc:
            with lock:
                failures.append(exc)

    def send(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for body in batches[c::clients]:
            t = time.perf_counter()
            conn.request(
                "POST",
                "/api/v1/crew/positions",
                body=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            data = resp.read()
            dt = time.perf_counter() - t
            if resp.status != 201 or json.loads(data)["stored"] != size:
                raise RuntimeError(f"ingest failed: {resp.status} {data[:200]!r}")
            with lock:
                latencies.append(dt)
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if failures:
        raise failures[0]
    return time.perf_counter() - t0, latencies


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes have used so far (Linux /proc; 0 for one gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def server_pids(url: str, gunicorn_pid: int) -> tuple[list[int], list[int]]:
    """The gunicorn workers (children of the master) and the PostgreSQL backends serving
    the benchmark's database."""
    import psycopg

    from core.settings import libpq_url

    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == gunicorn_pid:
                workers.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    with psycopg.connect(libpq_url(url)) as conn:
        backends = [
            int(pid)
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            )
        ]
    return workers, backends


# The statement ingest_positions used before issue 15, kept here only to be measured
# against: every column of the batch sent as one array parameter and unnested.
_ROW_VALUES_INSERT = """
    WITH batch AS (
        SELECT * FROM unnest(CAST(:at AS timestamptz[]), CAST(:lon AS float8[]), CAST(:lat AS float8[]),
                             CAST(:acc AS float8[]), CAST(:speed AS float8[]), CAST(:heading AS float8[]))
               AS b(at, lon, lat, acc, speed, heading)
    ), stored AS (
        INSERT INTO position_pings (crew_id, at, location, accuracy_m, speed_mps, heading_deg)
        SELECT :crew, at, ST_SetSRID(ST_MakePoint(lon, lat), 4326), acc, speed, heading FROM batch
        ON CONFLICT (crew_id, at) DO NOTHING
        RETURNING 1
    ), latest AS (
        SELECT * FROM batch ORDER BY at DESC LIMIT 1
    ), moved AS (
        INSERT INTO crew_positions (crew_id, at, location, accuracy_m, speed_mps, heading_deg)
        SELECT :crew, at, ST_SetSRID(ST_MakePoint(lon, lat), 4326), acc, speed, heading FROM latest
        ON CONFLICT (crew_id) DO UPDATE SET at = EXCLUDED.at, location = EXCLUDED.location,
            accuracy_m = EXCLUDED.accuracy_m, speed_mps = EXCLUDED.speed_mps, heading_deg = EXCLUDED.heading_deg
        WHERE crew_positions.at < EXCLUDED.at
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM stored), (SELECT count(*) FROM moved)
"""


def ingest_db(url: str, batches: int, size: int) -> dict[str, float]:
    """Seconds each way of storing `batches` batches in the database alone (no HTTP, no
    JSON): ingest_positions against the statement it replaced, in turn, one crew each."""
    from sqlalchemy import select, text

    from core.db import make_engine, make_sessionmaker
    from core.field import ingest_positions
    from core.models import Crew, Depot
    from geo.proof import Ping

    old = text(_ROW_VALUES_INSERT)

    def row_values(s: Any, crew: int, pings: list[Ping]) -> None:
        s.execute(
            old,
            {
                "crew": crew,
                "at": [p.at for p in pings],
                "lon": [p.lon for p in pings],
                "lat": [p.lat for p in pings],
                "acc": [p.accuracy_m for p in pings],
                "speed": [p.speed_mps for p in pings],
                "heading": [p.heading_deg for p in pings],
            },
        ).one()

    def copy(s: Any, crew: int, pings: list[Ping]) -> None:
        if ingest_positions(s, crew, pings) != (len(pings), 0, 0):
            raise RuntimeError("ingest_positions did not store the whole batch")

    engine = make_engine(url)
    try:
        sessions = make_sessionmaker(engine)
        with sessions.begin() as s:
            depot = s.scalar(select(Depot))
            crews = [
                Crew(code=f"db-{k}", name="bench", agency="Roads", skills=[], depot=depot)
                for k in range(2)
            ]
            s.add_all(crews)
            s.flush()
            ids = [c.id for c in crews]
        # Every batch in the past (ingest drops pings dated in the future), and apart from
        # the HTTP runs' times, which end before now.
        base = datetime.now(UTC) - timedelta(seconds=batches * size + 3600)
        ways = {"copy": (copy, ids[0]), "row values": (row_values, ids[1])}
        secs = dict.fromkeys(ways, 0.0)
        for b in range(batches):
            pings = [
                Ping(
                    at=base + timedelta(seconds=b * size + k),
                    lat=LAT + k * 1e-6,
                    lon=LON,
                    accuracy_m=6.0,
                    speed_mps=4.2,
                    heading_deg=180.0,
                )
                for k in range(size)
            ]
            order = list(ways) if b % 2 else list(reversed(ways))  # neither always goes first
            for way in order:
                fn, crew = ways[way]
                t = time.perf_counter()
                with sessions.begin() as s:
                    fn(s, crew, pings)
                secs[way] += time.perf_counter() - t
        return secs
    finally:
        engine.dispose()


def route_feed(port: int, token: str, iterations: int) -> tuple[list[float], int, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times: list[float] = []
    size = stops = 0
    etag = ""
    for _ in range(iterations):
        t = time.perf_counter()
        conn.request("GET", "/api/v1/crew/route", headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        data = resp.read()
        times.append(time.perf_counter() - t)
        if resp.status != 200:
            raise RuntimeError(f"route feed: {resp.status} {data[:200]!r}")
        size, stops, etag = len(data), len(json.loads(data)["stops"]), resp.getheader("ETag")
    conn.request(
        "GET",
        "/api/v1/crew/route",
        headers={"Authorization": f"Bearer {token}", "If-None-Match": etag},
    )
    resp = conn.getresponse()
    resp.read()
    if resp.status != 304:
        raise RuntimeError(f"expected 304, got {resp.status}")
    conn.close()
    return times, size, stops


def dispatch(url: str, wo_ids: list[int]) -> None:
    from sqlalchemy import select

    from core.db import make_engine, make_sessionmaker
    from core.lifecycle import Actor
    from core.models import Crew, WorkOrder
    from core.workorders import change_status

    engine = make_engine(url)
    try:
        with make_sessionmaker(engine).begin() as s:
            crew_id = s.scalar(select(Crew.id).where(Crew.code == "pothole-1"))
            for wo in s.scalars(select(WorkOrder).where(WorkOrder.id.in_(wo_ids))):
                change_status(s, wo, "dispatched", actor=Actor(label="bench"), crew_id=crew_id)
    finally:
        engine.dispose()


def big_photo(seed: int) -> bytes:
    """A ~3 MB JPEG (12 MP of structured noise), as a phone camera produces."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (750, 1000, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((4000, 3000), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=75)
    return buf.getvalue()


def completions(port: int, token: str, targets: list[tuple[int, float]]) -> tuple[list[float], int]:
    import uuid

    base = big_photo(1)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times: list[float] = []
    for k, (wo_id, lat) in enumerate(targets):
        photo = base[:-2] + bytes([k % 256, (k // 256) % 256]) + base[-2:]  # distinct bytes per job
        boundary = uuid.uuid4().hex
        now = datetime.now(UTC)
        fields = {
            "lat": str(lat),
            "lon": str(LON),
            "accuracy_m": "6",
            "fix_time": now.isoformat(),
            "outcome": "fixed",
        }
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{n}"\r\n\r\n{v}\r\n'.encode()
            for n, v in fields.items()
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="photos"; filename="p.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n".encode()
            + photo
            + b"\r\n"
        )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        t = time.perf_counter()
        conn.request(
            "POST",
            f"/api/v1/work-orders/{wo_id}/completion",
            body=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Idempotency-Key": f"bench-{wo_id}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )
        resp = conn.getresponse()
        data = resp.read()
        times.append(time.perf_counter() - t)
        if resp.status != 201:
            raise RuntimeError(f"completion: {resp.status} {data[:300]!r}")
    conn.close()
    return times, len(base)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=1000, help="pings per request")
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--completions", type=int, default=40)
    ap.add_argument(
        "--compare-tree",
        metavar="DIR",
        help="another checkout (e.g. `git archive` of an older commit) whose server ingests "
        "side by side with this one's, against the same database",
    )
    args = ap.parse_args(argv)
    if not args.database_url:
        ap.error(
            "--database-url or DATABASE_URL is required (the admin database of a PostGIS server)"
        )
    from core.field import MAX_PINGS_PER_BATCH

    if not 1 <= args.batch_size <= MAX_PINGS_PER_BATCH:
        ap.error(f"--batch-size: the API takes 1 to {MAX_PINGS_PER_BATCH} pings per request")
    admin = normalize_database_url(args.database_url)
    name, url = create_database(admin)
    server = other = None
    try:
        migrate(url)
        ids = seed(url, args.completions)
        with tempfile.TemporaryDirectory() as tmp:
            # Photos go to the throwaway folder, not the project's var/media.
            os.environ["STREETLOOP_MEDIA_DIR"] = str(Path(tmp) / "media")
            server = start_gunicorn(url, 2, Path(tmp))
            size = args.batch_size
            servers = {"this tree": server}
            if args.compare_tree:
                logdir = Path(tmp) / "compare"
                logdir.mkdir()
                other = start_gunicorn(url, 2, logdir, root=Path(args.compare_tree).resolve())
                servers[f"{args.compare_tree}"] = other
            step = timedelta(seconds=(args.batches + 4) * size)  # each run its own times
            start = datetime.now(UTC) - 3 * len(servers) * step  # the last run ends before now
            log("ingest warm-up")
            for srv in servers.values():
                ingest(srv.port, ids["token"], bodies(start, 4, size), 1, size)
                start += step
            backends = server_pids(url, server.proc.pid)[1]
            tiers = {
                label: ([os.getpid()], server_pids(url, srv.proc.pid)[0], backends)
                for label, srv in servers.items()
            }
            labels = list(servers)
            runs = [*labels, *reversed(labels)]  # A B B A: neither always goes first
            took = {label: [0.0, [], [0.0, 0.0, 0.0]] for label in labels}
            for label in runs:
                batches = bodies(start, args.batches, size)
                before = [cpu_seconds(p) for p in tiers[label]]
                secs, lat = ingest(servers[label].port, ids["token"], batches, args.clients, size)
                after = [cpu_seconds(p) for p in tiers[label]]
                start += step
                took[label][0] += secs
                took[label][1] += lat
                took[label][2] = [
                    t + a - b for t, a, b in zip(took[label][2], after, before, strict=True)
                ]
            n = 2 * args.batches * size
            for label, (secs, lat, cpu) in took.items():
                per = [c / n * 1e6 for c in cpu]
                print(
                    f"positions ({label}): {n:,} pings in 2 x {args.batches} batches of {size:,} "
                    f"from {args.clients} clients: {secs:.2f} s = {n / secs:,.0f} pings/s; "
                    f"batch p50 {pct(lat, 0.5) * 1000:.1f} ms, p95 {pct(lat, 0.95) * 1000:.1f} ms; "
                    f"CPU per 1,000 pings: client {per[0]:.1f} ms, gunicorn {per[1]:.1f} ms, "
                    f"PostgreSQL {per[2]:.1f} ms (on 2 cores at most {2e6 / sum(per):,.0f} pings/s)"
                )
            if len(took) == 2:
                (a, ta), (b, tb) = took.items()
                print(f"positions: {a} / {b} {tb[0] / ta[0]:.2f}x")
            n = args.batches * size
            db = ingest_db(url, args.batches, size)
            print(
                f"positions in the database alone, {args.batches} batches of {size:,} each way: "
                + ", ".join(f"{k} {n / v:,.0f} pings/s" for k, v in db.items())
                + f"; copy / row values {db['row values'] / db['copy']:.2f}x"
            )
            times, size, stops = route_feed(server.port, ids["token"], args.iterations)
            print(
                f"route feed: {stops} stops, {size:,} bytes, n={len(times)}: p50 {pct(times, 0.5) * 1000:.1f} ms, "
                f"p95 {pct(times, 0.95) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms; If-None-Match -> 304 ok"
            )
            targets = [
                (int(a), float(b)) for a, b in (x.split(":") for x in ids["complete"].split(","))
            ]
            dispatch(url, [t[0] for t in targets])
            ctimes, size = completions(server.port, ids["token"], targets)
            print(
                f"completion: {len(ctimes)} submissions with one {size / 1e6:.1f} MB, 12 MP JPEG each: "
                f"p50 {pct(ctimes, 0.5) * 1000:.0f} ms, p95 {pct(ctimes, 0.95) * 1000:.0f} ms "
                "(API time; public copies are a job)"
            )
            for srv in (server, other):
                if srv is not None:
                    srv.stop()
            server = other = None
    finally:
        for srv in (server, other):
            if srv is not None:
                srv.stop()
        drop_database(admin, name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
