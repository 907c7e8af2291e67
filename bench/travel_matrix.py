"""Travel matrix time on Andorra: Valhalla vs straight line, for 50/200/500 street points.

Builds the Valhalla tiles from the committed extract into a temporary folder
(or uses --road-data DIR), draws random points on named drivable streets
(geo.osm.street_points) and times one full N x N matrix per provider.

    .venv/bin/python bench/travel_matrix.py [--sizes 50 200 500] [--repeat 3] [--seed 1]
        [--road-data DIR] [--compare-costmatrix]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geo.osm import street_points  # noqa: E402
from geo.roads import build_tiles  # noqa: E402
from geo.travel import Point, StraightLineProvider, TravelTimeProvider, ValhallaProvider  # noqa: E402

PBF = ROOT / "data/osm/andorra.osm.pbf"


def best_of(provider: TravelTimeProvider, points: list[Point], repeat: int) -> tuple[float, int]:
    best = float("inf")
    fallback = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        m = provider.matrix(points)
        best = min(best, time.perf_counter() - t0)
        fallback = m.fallback_pairs
    return best, fallback


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 500])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per size; the best is shown")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--road-data",
        type=Path,
        help="folder from `streetloop roads build` (default: build to a temp dir)",
    )
    ap.add_argument(
        "--compare-costmatrix",
        action="store_true",
        help="also time Valhalla's costmatrix algorithm (the build config uses timedistancematrix)",
    )
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="streetloop-bench-") as tmp:
        road_data = args.road_data
        if road_data is None:
            t0 = time.perf_counter()
            road_data = build_tiles(PBF, Path(tmp) / "roads").parent
            size = (road_data / "tiles.tar").stat().st_size
            print(f"tile build: {time.perf_counter() - t0:.2f} s, extract {size / 1e6:.2f} MB")

        providers: list[tuple[str, TravelTimeProvider]] = [
            ("valhalla", ValhallaProvider(road_data)),
            ("straight_line", StraightLineProvider()),
        ]
        if args.compare_costmatrix:
            config = json.loads((road_data / "valhalla.json").read_text())
            config["thor"]["source_to_target_algorithm"] = "costmatrix"
            cm = Path(tmp) / "costmatrix.json"
            cm.write_text(json.dumps(config))
            providers.insert(1, ("valhalla costmatrix", ValhallaProvider(cm)))

        t0 = time.perf_counter()
        pts = [(lon, lat) for lon, lat, _ in street_points(PBF, max(args.sizes), seed=args.seed)]
        print(
            f"sampled {len(pts)} street points in {time.perf_counter() - t0:.2f} s (seed {args.seed})"
        )
        for _, p in providers:
            p.matrix(pts[:2])  # warm up: Actor creation and tile mmap are not matrix time

        print(
            f"\n{'provider':<21} {'points':>6} {'pairs':>8} {'seconds':>9} {'pairs/s':>11} {'fallback':>8}"
        )
        for n in args.sizes:
            for label, p in providers:
                secs, fallback = best_of(p, pts[:n], args.repeat)
                print(
                    f"{label:<21} {n:>6} {n * n:>8} {secs:>9.3f} {n * n / secs:>11,.0f} {fallback:>8}"
                )


if __name__ == "__main__":
    main()
