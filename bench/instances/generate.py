"""Larger VRPTW instances in the manner of Solomon (1987) and Gehring & Homberger (1999),
written in Solomon's text format so that bench/vrptw.py reads them like the Solomon set.

    python bench/instances/generate.py [--out DIR]   # rewrites the committed files

Each instance is one of the six classes times four sizes (200, 400, 600, 1,000 customers):
- geography: R (uniform random points), C (points around cluster centres, one per 20
  customers), RC (half of each); on a square whose side grows with the size, as in
  Gehring & Homberger's sets (140 for 200 customers up to 500 for 1,000), depot at the centre;
- horizon: type 1 short (few customers per route: capacity 200, a horizon of 4.5 sides),
  type 2 long (capacity 1,000, four times that horizon);
- service time 10 (R, RC) or 90 (C), as in Solomon's sets; demand uniform in 1..40;
- time windows: each customer's window is centred uniformly where a vehicle can reach it
  and still get back, of width uniform in 3-12 % (type 1) or 5-30 % (type 2) of the
  horizon; a quarter of the customers (rotating with the instance) have none (the whole
  reachable horizon), as Solomon's lower "density" instances do.
- fleet: a quarter of the customers (type 1) or a tenth (type 2), ample for feasibility:
  the objective is distance alone.

Seeds are fixed (`SEED_BASE` + instance number), so the files are reproducible; they are
committed beside this script.
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

SIZES = (200, 400, 600, 1000)
CLASSES = ("C1", "C2", "R1", "R2", "RC1", "RC2")
SIDE = {200: 140, 400: 200, 600: 300, 1000: 500}
SEED_BASE = 20261202


def points(kind: str, n: int, side: int, rng: random.Random) -> list[tuple[int, int]]:
    def uniform() -> tuple[int, int]:
        return rng.randint(0, side), rng.randint(0, side)

    if kind == "R":
        return [uniform() for _ in range(n)]
    centres = [uniform() for _ in range(max(2, n // 20))]
    sigma = side / 40

    def clustered() -> tuple[int, int]:
        cx, cy = rng.choice(centres)
        x = min(side, max(0, round(rng.gauss(cx, sigma))))
        y = min(side, max(0, round(rng.gauss(cy, sigma))))
        return x, y

    if kind == "C":
        return [clustered() for _ in range(n)]
    half = n // 2
    return [clustered() for _ in range(half)] + [uniform() for _ in range(n - half)]


def instance(cls: str, n: int, number: int) -> str:
    rng = random.Random(SEED_BASE + number)
    kind, typ = cls[:-1], int(cls[-1])
    side = SIDE[n]
    depot = (side // 2, side // 2)
    horizon = round(4.5 * side) * (1 if typ == 1 else 4)
    capacity = 200 if typ == 1 else 1000
    vehicles = n // 4 if typ == 1 else n // 10
    service = 90 if kind == "C" else 10
    if kind == "C":
        horizon *= 3  # Solomon's C sets have long service times and horizons to match
    lo, hi = (0.03, 0.12) if typ == 1 else (0.05, 0.30)
    rows = [(0, depot[0], depot[1], 0, 0, horizon, 0)]
    for i, (x, y) in enumerate(points(kind, n, side, rng), start=1):
        d = math.hypot(x - depot[0], y - depot[1])
        earliest = math.ceil(d)
        latest = math.floor(horizon - d - service)
        demand = rng.randint(1, 40)
        if (i + number) % 4 == 0:
            ready, due = 0, latest
        else:
            width = rng.uniform(lo, hi) * horizon
            centre = rng.uniform(earliest, latest)
            ready = max(0, round(centre - width / 2))
            due = min(latest, max(earliest, round(centre + width / 2)))
            ready = min(ready, due)
        rows.append((i, x, y, demand, ready, due, service))
    name = f"SL_{cls}_{n}"
    lines = [
        name,
        "",
        "VEHICLE",
        "NUMBER     CAPACITY",
        f"{vehicles:>5}{capacity:>13}",
        "",
        "CUSTOMER",
        "CUST NO.  XCOORD.    YCOORD.    DEMAND   READY TIME  DUE DATE   SERVICE TIME",
        "",
    ]
    lines += ["".join(f"{v:>10}" for v in r) for r in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    a = ap.parse_args()
    number = 0
    for n in SIZES:
        for cls in CLASSES:
            number += 1
            path = a.out / f"SL_{cls}_{n}.txt"
            path.write_text(instance(cls, n, number))
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
