"""Benchmark: the CitiStat page's district map on real boundaries from an OSM extract.

Creates a throwaway database on the PostgreSQL server given by --database-url or
$DATABASE_URL (an *admin* URL), migrates it, imports the extract's districts as the demo
city does (`geo.osm.read_districts`), with --demo the whole demo city (requests and two
weeks of past work, `streetloop seed demo`). Then, for each figure the map can show:
the vertices stored and drawn, the map's size in the page, and the time to draw it and
to serve the whole page (p50 of --runs, in process). With --screenshot DIR, chromium
(Debian's, as the browser stage uses) saves the page at 1280 x 900 scrolled to the map.
Asserts nothing.

    .venv/bin/python bench/citistat_map.py [--pbf data/osm/andorra.osm.pbf] [--demo]
        [--runs 7] [--screenshot DIR] [--database-url URL] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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

TZ = "Europe/Andorra"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    p.add_argument("--pbf", type=Path, default=ROOT / "data" / "osm" / "andorra.osm.pbf")
    p.add_argument(
        "--demo", action="store_true", help="seed the whole demo city, not only its districts"
    )
    p.add_argument("--runs", type=int, default=7)
    p.add_argument(
        "--screenshot", type=Path, help="folder for a chromium screenshot of the map at 1280 px"
    )
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    admin_url = loopback_admin_url(p, args.database_url)
    unwind_on_sigterm()
    log(machine())
    name, url = create_database(admin_url)
    media = tempfile.mkdtemp(prefix="citistat-map-media-")
    try:
        migrate(url)
        t0 = time.perf_counter()
        if args.demo:
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "STREETLOOP_MEDIA_DIR": media,
                "STREETLOOP_TIMEZONE": TZ,
                "STREETLOOP_SECRET_KEY": "bench",
            }
            # `streetloop seed demo` of this checkout (api.cli has no __main__ of its own).
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "from api.cli import main; main()",
                    "seed",
                    "demo",
                    "--pbf",
                    str(args.pbf),
                ],
                cwd=ROOT,
                env=env,
                check=True,
            )
        else:
            from core.db import make_engine, make_sessionmaker
            from core.models import District
            from geo.osm import read_districts

            engine = make_engine(url)
            with make_sessionmaker(engine).begin() as s:
                for i, rec in enumerate(read_districts(args.pbf, close_gaps_m=5000)):
                    s.add(
                        District(code=f"d{i}", name=rec.name, geom=f"SRID=4326;{rec.geometry.wkt}")
                    )
            engine.dispose()
        log(f"seeded from {args.pbf.name} in {time.perf_counter() - t0:.1f} s")
        measure(url, media, args)
    finally:
        release_database(admin_url, name, args.keep)
    return 0


def measure(url: str, media: str, args: argparse.Namespace) -> None:
    from api import create_app
    from api.citistat_map import FIGURES
    from core.settings import Settings

    settings = Settings(database_url=url, secret_key="bench", media_dir=Path(media), timezone=TZ)
    app = create_app(settings)
    client = app.test_client()
    with app.extensions["streetloop.sessions"]() as s:
        districts, stored = s.execute(
            text("SELECT count(*), sum(ST_NPoints(geom)) FROM districts")
        ).one()
    print(f"{args.pbf.name}: {districts} districts, {stored} vertices stored")
    for key in FIGURES:
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            r = client.get(f"/citistat?shade={key}")
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, r.status_code
        html = r.get_data(as_text=True)
        svg = re.search(r'<svg class="map".*?</svg>', html, re.S)
        drawn = (
            sum(len(d.split(" ")) for d in re.findall(r' d="M([^"]+)"', svg.group(0))) if svg else 0
        )
        print(
            f"  shade={key}: page {len(html) / 1024:.1f} KiB, map {len(svg.group(0)) / 1024 if svg else 0:.1f} KiB, "
            f"{drawn} points drawn; page served in {statistics.median(times) * 1000:.0f} ms (p50 of {args.runs})"
        )
    if args.screenshot:
        screenshot(app, args.screenshot, args.pbf.stem.split(".")[0])


def screenshot(app: object, folder: Path, name: str) -> None:
    import threading

    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from tests.browser.conftest import CHROMIUM_ARGS, chromium_path

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            # A closed network, as in production: nothing but this server.
            page.route(
                "**/*",
                lambda route: (
                    route.continue_()
                    if route.request.url.startswith(f"http://127.0.0.1:{server.server_port}/")
                    else route.abort()
                ),
            )
            for key in ("on_time", "backlog"):
                page.goto(f"http://127.0.0.1:{server.server_port}/citistat?shade={key}")
                page.locator("#by-district").evaluate("(e) => e.scrollIntoView({block: 'start'})")
                page.screenshot(path=str(folder / f"citistat-map-{name}-{key}.png"))
            browser.close()
    finally:
        server.shutdown()
    log(f"screenshots in {folder}")


if __name__ == "__main__":
    raise SystemExit(main())
