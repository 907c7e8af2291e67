"""Crew phone API speed: GPS ping ingest rate, route feed latency with 40 stops, completion latency.

    python bench/crew_phone.py [--database-url URL] [--batches 60] [--clients 2] [--iterations 200]

Throwaway database and gunicorn (-w 2) on 127.0.0.1, removed at the end; numbers are
printed, never asserted. Ping batches are 1,000 fixes each, as a phone sends after a
stretch without signal.
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


def ingest(port: int, token: str, batches: int, clients: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    base = datetime.now(UTC) - timedelta(days=1)

    def client(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for b in range(c, batches, clients):
            pings = [
                {
                    "time": (base + timedelta(seconds=b * 1000 + k)).isoformat(),
                    "lat": LAT + k * 1e-6,
                    "lon": LON,
                    "accuracy": 6.0,
                    "speed": 4.2,
                    "heading": 180.0,
                }
                for k in range(1000)
            ]
            body = json.dumps({"pings": pings})
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
            if resp.status != 201 or json.loads(data)["stored"] != 1000:
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
    return time.perf_counter() - t0, latencies


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
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--completions", type=int, default=40)
    args = ap.parse_args(argv)
    if not args.database_url:
        ap.error(
            "--database-url or DATABASE_URL is required (the admin database of a PostGIS server)"
        )
    admin = normalize_database_url(args.database_url)
    name, url = create_database(admin)
    server = None
    try:
        migrate(url)
        ids = seed(url, args.completions)
        with tempfile.TemporaryDirectory() as tmp:
            # Photos go to the throwaway folder, not the project's var/media.
            os.environ["STREETLOOP_MEDIA_DIR"] = str(Path(tmp) / "media")
            server = start_gunicorn(url, 2, Path(tmp))
            log("ingest warm-up")
            ingest(server.port, ids["token"], 4, 1)
            secs, lat = ingest(server.port, ids["token"], args.batches, args.clients)
            n = args.batches * 1000
            print(
                f"positions: {n:,} pings in {args.batches} batches of 1,000 from {args.clients} clients: "
                f"{secs:.2f} s = {n / secs:,.0f} pings/s; "
                f"batch p50 {pct(lat, 0.5) * 1000:.1f} ms, p95 {pct(lat, 0.95) * 1000:.1f} ms"
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
            server.stop()
            server = None
    finally:
        if server is not None:
            server.stop()
        drop_database(admin, name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
