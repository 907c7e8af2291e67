"""The offline basemap on Andorra and Helsinki: build time, table size, tile sizes and tile
load time (zooms 12-17, cut on demand by PostGIS, through the Flask app).

For each extract: a scratch database (migrated), `build_basemap` timed (and the second,
skipped run), the size of `basemap_features` with its index, then tiles at each zoom
12..17 over the city, drawn from where the streets are (the tile under a random point
of a random road, so the set looks like what maps of the city ask for), each fetched
once cold through the app's test client, and once more with its ETag (the 304 of a
browser revalidating). Nothing is asserted; the numbers are printed as a table.

    DATABASE_URL=$(bash scripts/pg.sh url postgres) .venv/bin/python bench/basemap.py
        [--extract andorra=data/osm/andorra.osm.pbf --extract helsinki=../shared/data/osm/helsinki.osm.pbf]
        [--tiles 100] [--seed 12]
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from api.cli import alembic_config  # noqa: E402
from core.db import make_engine, make_sessionmaker  # noqa: E402
from core.settings import Settings, normalize_database_url  # noqa: E402
from geo.basemap import MAX_DATA_ZOOM, build_basemap  # noqa: E402
from tests.databases import scratch_database  # noqa: E402

DEFAULT_EXTRACTS = [
    f"andorra={ROOT / 'data/osm/andorra.osm.pbf'}",
    f"helsinki={ROOT.parent / 'shared/data/osm/helsinki.osm.pbf'}",
]
ZOOMS = range(12, MAX_DATA_ZOOM + 1)


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    return int((lon + 180) / 360 * n), int(
        (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    )


def tiles_over(bounds: list[float], z: int) -> int:
    x0, y1 = tile_of(bounds[0], bounds[1], z)
    x1, y0 = tile_of(bounds[2], bounds[3], z)
    return (x1 - x0 + 1) * (y1 - y0 + 1)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_extract(name: str, pbf: Path, admin_url: str, n_tiles: int, seed: int) -> None:
    from alembic import command

    from api import create_app
    from workers.app import Queue

    with scratch_database(admin_url, "streetloop_bench") as url:
        command.upgrade(alembic_config(url), "head")
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        t0 = time.perf_counter()
        with sessions.begin() as s:
            summary = build_basemap(s, pbf)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        with sessions.begin() as s:
            assert build_basemap(s, pbf).skipped
        skip_s = time.perf_counter() - t0
        with sessions() as s:
            table_bytes = s.scalar(text("SELECT pg_total_relation_size('basemap_features')"))
            layers = dict(
                s.execute(text("SELECT layer, count(*) FROM basemap_features GROUP BY 1")).all()
            )
            bounds = s.scalar(text("SELECT bounds FROM basemap_build"))
            # setseed takes a number in [-1, 1]: the same seed draws the same points.
            s.execute(text("SELECT setseed(:s)"), {"s": (seed % 1000) / 1000})
            points = s.execute(
                text(
                    "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_Transform(ST_LineInterpolatePoint("
                    "  ST_GeometryN(geom, 1), random()), 4326) AS p FROM basemap_features"
                    "  WHERE layer = 'roads' ORDER BY random() LIMIT :n) q"
                ),
                {"n": n_tiles * 4},
            ).all()

        settings = Settings(database_url=url, secret_key="bench")
        queue = Queue(settings)
        app = create_app(settings, sessions=sessions, queue=queue)
        client = app.test_client()
        rng = random.Random(seed)
        print(f"\n## {name}: {pbf.name} ({pbf.stat().st_size / 1e6:.2f} MB)")
        print(
            f"build {build_s:.2f} s ({summary.features} features: "
            + ", ".join(f"{k} {v}" for k, v in sorted(layers.items()))
            + f"); unchanged file: skipped in {skip_s:.2f} s"
        )
        print(f"basemap_features with its index: {table_bytes / 1e6:.1f} MB; bounds {bounds}")
        precut = sum(tiles_over(bounds, z) for z in range(0, MAX_DATA_ZOOM + 1))
        print(f"tiles a pre-cut of zooms 0-{MAX_DATA_ZOOM} over the bounds would write: {precut:,}")
        print()
        print(
            "| zoom | tiles | empty | p50 ms | p95 ms | max ms | 304 p50 ms | mean kB | mean kB gzip |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        every: list[float] = []
        for z in ZOOMS:
            wanted = list(dict.fromkeys(tile_of(lon, lat, z) for lon, lat in points))
            rng.shuffle(wanted)
            wanted = wanted[:n_tiles]
            times, revalidate, sizes, zipped, empty = [], [], [], [], 0
            for x, y in wanted:
                t0 = time.perf_counter()
                r = client.get(f"/tiles/{z}/{x}/{y}.pbf")
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code in (200, 204), r.status_code
                if r.status_code == 204:
                    empty += 1
                else:
                    sizes.append(len(r.data))
                    zipped.append(len(gzip.compress(r.data)))
                t0 = time.perf_counter()
                again = client.get(
                    f"/tiles/{z}/{x}/{y}.pbf", headers={"If-None-Match": r.headers["ETag"]}
                )
                revalidate.append((time.perf_counter() - t0) * 1000)
                assert again.status_code == 304
            every += times
            print(
                f"| {z} | {len(wanted)} | {empty} | {statistics.median(times):.1f} | {pct(times, 0.95):.1f} | "
                f"{max(times):.1f} | {statistics.median(revalidate):.1f} | "
                f"{statistics.mean(sizes) / 1e3 if sizes else 0:.1f} | "
                f"{statistics.mean(zipped) / 1e3 if zipped else 0:.1f} |"
            )
        print(
            f"| 12-{MAX_DATA_ZOOM} | {len(every)} | | {statistics.median(every):.1f} | {pct(every, 0.95):.1f} | "
            f"{max(every):.1f} | | | |"
        )
        queue.close()
        engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="admin URL (default $DATABASE_URL)",
    )
    ap.add_argument(
        "--extract",
        action="append",
        metavar="NAME=PBF",
        help="repeatable; default Andorra and Helsinki",
    )
    ap.add_argument("--tiles", type=int, default=100, help="tiles per zoom")
    ap.add_argument("--seed", type=int, default=12)
    args = ap.parse_args()
    if not args.database_url:
        ap.error("set DATABASE_URL or pass --database-url")
    for item in args.extract or DEFAULT_EXTRACTS:
        name, _, path = item.partition("=")
        pbf = Path(path)
        if not pbf.is_file():
            print(f"{name}: {pbf} not found; skipped", file=sys.stderr)
            continue
        bench_extract(name, pbf, normalize_database_url(args.database_url), args.tiles, args.seed)


if __name__ == "__main__":
    main()
