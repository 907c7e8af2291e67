"""Memory and CPU time of one photo, from the upload's header to its public copy.

Usage:
    python bench/photos.py [--code DIR ...] [--repeat N] [--heic | --no-heic]

Each case is run in a fresh Python process per stage, so the peak resident memory
(VmHWM) is that stage's own and not left over from an earlier case:

- `intake`: what the web process does with each photo of a crew's completion before it
  answers (`inspect_photo`, `exif_facts`, `perceptual_hash`); an Open311 report does
  the first of these only.
- `public copy`: what the worker does later (`public_copies`: the EXIF-free JPEG and its
  thumbnail). It is skipped for a photo the intake refused, as the worker never sees one.

`--code DIR` imports `geo.photos` from another checkout; given several times, each case is
run with each checkout in turn, so code before and after a change is measured side by
side in one run (e.g. `git archive main | tar -x -C /tmp/main`, then
`--code /tmp/main --code .`). Limits are the defaults of that checkout's `Settings`. Nothing here talks to a network or
a database; the photos are generated in memory (a 7000x7000 PNG of zeros, 143 kB; an
8000x6000 "48 MP phone" JPEG; a 4000x3000 12 MP JPEG; a 4032x3024 HEIC).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the photos


def black_heic(width: int, height: int) -> bytes:
    """A HEIC of nothing: 49 MP in about 30 kB, under the camera cap by pixels alone."""
    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    Image.new("RGB", (width, height)).save(buf, "HEIF", quality=80)
    return buf.getvalue()


def camera_photo(width: int, height: int, fmt: str = "JPEG", seed: int = 1) -> bytes:
    """Coarse noise blown up to size (photo-like file sizes), with a phone's EXIF."""
    import numpy as np
    from PIL import Image

    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 10, width // 10, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "PhoneMaker", "Phone 48", 6
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (42.0, 30.0, 29.0), "E", (1.0, 31.0, 27.0)
    buf = io.BytesIO()
    img.save(buf, fmt, quality=85, exif=exif.tobytes())
    return buf.getvalue()


# --------------------------------------------------------------------------- one stage, in a child


def _child(code: str, stage: str, path: str) -> None:
    sys.path.insert(0, code)
    import warnings

    warnings.simplefilter("ignore")
    from core.settings import Settings
    from geo import photos as P

    data = Path(path).read_bytes()
    cfg = Settings(database_url="postgresql+psycopg://unused")
    if hasattr(P, "PhotoLimits"):  # this branch's code
        limits = P.PhotoLimits.from_settings(cfg)

        def inspect(blob: bytes) -> object:
            return P.inspect_photo(blob, limits)
    else:  # main's code before the change: one cap for every format

        def inspect(blob: bytes) -> object:
            return P.inspect_photo(
                blob, max_bytes=cfg.max_upload_bytes, max_pixels=cfg.max_image_pixels
            )

    base_mb = _high_water_mb()
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter()
    outcome = "ok"
    try:
        if stage == "intake":
            inspect(data)
            P.exif_facts(data)
            P.perceptual_hash(data)
        else:
            full, _thumb = P.public_copies(data)
            from PIL import Image

            with Image.open(io.BytesIO(full)) as img:
                outcome = f"ok {img.size[0]}x{img.size[1]}"
    except P.PhotoRejected as exc:
        outcome = f"{413 if exc.too_large else 422}: {exc}"
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(
        json.dumps(
            {
                "outcome": outcome,
                "cpu_s": cpu,
                "wall_s": wall,
                "base_mb": base_mb,
                "peak_mb": _high_water_mb(),
            }
        )
    )


def _high_water_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: on Linux a child's
    ru_maxrss starts at its parent's peak (fork), which would hide the stage's own."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_stage(code: Path, stage: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-B", __file__, "--child", str(code), stage, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--code",
        type=Path,
        action="append",
        help="checkout whose geo.photos is measured; repeat to compare (default: this one)",
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs per case and stage; medians are shown"
    )
    ap.add_argument(
        "--heic", action=argparse.BooleanOptionalAction, default=True, help="include the HEIC case"
    )
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        _child(*a.child)
        return 0

    # The bomb the photo tests refuse, made the same way (the parent only makes files;
    # what is measured runs in children, on each --code checkout).
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.geo.test_photos import zero_png

    cases = [
        ("7000x7000 PNG of zeros", lambda: zero_png(7000, 7000)),
        ("48 MP phone JPEG 8000x6000", lambda: camera_photo(8000, 6000)),
        ("12 MP JPEG 4000x3000", lambda: camera_photo(4000, 3000, seed=2)),
    ]
    if a.heic:
        cases.append(("12 MP HEIC 4032x3024", lambda: camera_photo(4032, 3024, "HEIF", seed=3)))
        cases.append(("7000x7000 HEIC of black", lambda: black_heic(7000, 7000)))
    codes = [c.resolve() for c in (a.code or [ROOT])]
    for i, code in enumerate(codes):
        print(f"code {i}: {code}")
    print(f"runs per cell: {a.repeat} (medians)   python {sys.version.split()[0]}")
    print(
        f"{'case':<28} {'bytes':>10} {'stage':<12} {'code':>4} {'outcome':<34} {'cpu s':>6} {'wall s':>6} "
        f"{'peak MB':>8} {'+MB':>7}"
    )
    with tempfile.TemporaryDirectory(prefix="streetloop-bench-photos-") as tmp:
        for name, make in cases:
            path = Path(tmp) / "photo"
            path.write_bytes(make())
            size = path.stat().st_size
            refused: set[int] = set()
            for stage in ("intake", "public copy"):
                for i, code in enumerate(codes):
                    if i in refused:
                        continue  # a refused photo never reaches the worker
                    runs = [
                        run_stage(code, "intake" if stage == "intake" else "public", path)
                        for _ in range(a.repeat)
                    ]
                    outcome = runs[0]["outcome"]
                    if not outcome.startswith("ok"):
                        refused.add(i)
                    cpu = statistics.median(r["cpu_s"] for r in runs)
                    wall = statistics.median(r["wall_s"] for r in runs)
                    peak = statistics.median(r["peak_mb"] for r in runs)
                    grew = statistics.median(r["peak_mb"] - r["base_mb"] for r in runs)
                    print(
                        f"{name:<28} {size:>10,} {stage:<12} {i:>4} {outcome[:34]:<34} {cpu:>6.2f} {wall:>6.2f} "
                        f"{peak:>8.0f} {grew:>7.0f}",
                        flush=True,
                    )
    print("+MB: peak resident memory minus the child's own after its imports.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
