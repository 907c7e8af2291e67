"""Build Valhalla road graph tiles from an OSM extract, once, into a data folder.

The folder ends up holding ``valhalla.json`` (the config an Actor loads),
``tiles/`` (the graph), ``tiles.tar`` (the same graph as one indexed tar,
which an Actor memory-maps instead of opening thousands of files) and
``build.json`` (what was built from what, so a rebuild can be skipped).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import valhalla
from valhalla import PYVALHALLA_DIR

log = logging.getLogger(__name__)

CONFIG_NAME = "valhalla.json"
TILE_DIR_NAME = "tiles"
EXTRACT_NAME = "tiles.tar"
MANIFEST_NAME = "build.json"

# Valhalla's defaults (2,500 pairs = 50x50, 20 stops per route) are sized for
# a public server; in-process for one city we want a whole day's jobs in one
# matrix and a crew's whole route in one request.
DEFAULT_MAX_MATRIX_LOCATION_PAIRS = 250_000
DEFAULT_MAX_ROUTE_LOCATIONS = 500
# Longest straight line between two matrix points. 400 km (Valhalla's default)
# already covers any city; said explicitly so a smaller default never bites.
DEFAULT_MAX_MATRIX_DISTANCE_M = 400_000.0

_MATRIX_COSTINGS = ("auto", "taxi", "truck", "bicycle", "pedestrian", "motor_scooter", "motorcycle")


class RoadDataError(RuntimeError):
    """The road data could not be built or is missing."""


def valhalla_binary(name: str) -> Path:
    """Absolute path of a Valhalla executable shipped inside the pyvalhalla wheel.

    Looked up in the installed package rather than on PATH so the version
    always matches the ``valhalla`` module that will read the tiles.
    """
    path = (PYVALHALLA_DIR / "bin" / name).resolve()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise RoadDataError(f"{name} not found (or not executable) at {path}; reinstall pyvalhalla")
    return path


def build_tiles(
    pbf: Path,
    out_dir: Path,
    *,
    max_matrix_location_pairs: int = DEFAULT_MAX_MATRIX_LOCATION_PAIRS,
    max_route_locations: int = DEFAULT_MAX_ROUTE_LOCATIONS,
    force: bool = False,
) -> Path:
    """Build Valhalla tiles and a tar extract for ``pbf`` into ``out_dir``; return the config path.

    Skipped (config rewritten only) when ``out_dir`` already holds an extract
    built from this same file (same path, size and mtime), unless ``force``.
    Raises ``RoadDataError`` with Valhalla's own output when a step fails.
    """
    pbf = Path(pbf).resolve()
    out_dir = Path(out_dir).resolve()
    if not pbf.is_file():
        raise RoadDataError(f"OSM extract not found: {pbf}")
    if max_matrix_location_pairs < 1 or max_route_locations < 2:
        raise ValueError("max_matrix_location_pairs must be >= 1 and max_route_locations >= 2")
    out_dir.mkdir(parents=True, exist_ok=True)

    tile_dir = out_dir / TILE_DIR_NAME
    extract = out_dir / EXTRACT_NAME
    config_path = out_dir / CONFIG_NAME
    manifest_path = out_dir / MANIFEST_NAME
    source = _source_stamp(pbf)

    if not force and extract.is_file() and _read_manifest(manifest_path).get("source") == source:
        # Limits are config, not graph: honour new ones without a rebuild.
        _write_json(
            config_path,
            _runtime_config(tile_dir, extract, max_matrix_location_pairs, max_route_locations),
        )
        log.info("road tiles for %s are up to date in %s; build skipped", pbf.name, out_dir)
        return config_path

    started = time.perf_counter()
    # Build beside the final folder and swap in at the end, so a failed or
    # interrupted build never leaves half a graph where an Actor would load it.
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir))
    try:
        new_tiles = work / TILE_DIR_NAME
        new_tiles.mkdir()
        new_extract = work / EXTRACT_NAME
        build_config = _runtime_config(
            new_tiles, new_extract, max_matrix_location_pairs, max_route_locations
        )
        # Valhalla logs through its own logger; capture it for error messages.
        build_config["logging"] = {"type": "std_out", "color": False}
        build_config_path = work / "build-config.json"
        _write_json(build_config_path, build_config)

        _run(
            [str(valhalla_binary("valhalla_build_tiles")), "-c", str(build_config_path), str(pbf)],
            "valhalla_build_tiles",
        )
        if not any(new_tiles.rglob("*.gph")):
            raise RoadDataError(
                f"valhalla_build_tiles produced no tiles from {pbf}: no roads in the extract?"
            )
        tiles_done = time.perf_counter()
        # The extract tool ships as a Python module, not a binary; run it in
        # this interpreter so it is the same pyvalhalla.
        _run(
            [
                sys.executable,
                "-m",
                "valhalla.valhalla_build_extract",
                "-c",
                str(build_config_path),
                "-O",
            ],
            "valhalla_build_extract",
        )
        if not new_extract.is_file():
            raise RoadDataError(f"valhalla_build_extract did not write {new_extract}")

        # Swap: old extract and manifest go first so a crash mid-swap reads as "not built".
        manifest_path.unlink(missing_ok=True)
        extract.unlink(missing_ok=True)
        if tile_dir.exists():
            shutil.rmtree(tile_dir)
        new_tiles.rename(tile_dir)
        new_extract.rename(extract)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    _write_json(
        config_path,
        _runtime_config(tile_dir, extract, max_matrix_location_pairs, max_route_locations),
    )
    seconds = time.perf_counter() - started
    size = extract.stat().st_size
    _write_json(
        manifest_path,
        {
            "source": source,
            "valhalla_version": valhalla.__version__,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(seconds, 3),
            "extract_bytes": size,
        },
    )
    log.info(
        "built road tiles for %s in %.1f s (tiles %.1f s, extract %.1f s): %s, %.1f MB",
        pbf.name,
        seconds,
        tiles_done - started,
        seconds - (tiles_done - started),
        extract,
        size / 1e6,
    )
    return config_path


def _runtime_config(
    tile_dir: Path, extract: Path, max_pairs: int, max_route_locations: int
) -> dict[str, Any]:
    # Start from pyvalhalla's own defaults so keys we do not set stay valid
    # for this Valhalla version. Paths are filled in by hand because
    # get_config insists they already exist; deepcopy because get_config
    # hands out the package's module-level dicts.
    config = copy.deepcopy(valhalla.get_config(tile_extract="", tile_dir=""))
    mjolnir = config["mjolnir"]
    mjolnir["tile_dir"] = str(tile_dir)
    mjolnir["tile_extract"] = str(extract)
    # No admin/timezone/traffic/transit databases: empty paths stop Valhalla
    # from looking for the /data/valhalla/... defaults.
    for key in (
        "admin",
        "timezone",
        "landmarks",
        "traffic_extract",
        "transit_dir",
        "transit_feeds_dir",
    ):
        mjolnir[key] = ""
    # Measured on Andorra (500 street points): timedistancematrix (one
    # Dijkstra per source) is ~12x faster than costmatrix, matches /route to
    # the second, and costmatrix returned null for 2 points that /route
    # reaches. City-sized graphs do not need costmatrix's hierarchy pruning.
    config["thor"]["source_to_target_algorithm"] = "timedistancematrix"
    limits = config["service_limits"]
    for costing in _MATRIX_COSTINGS:
        limits[costing]["max_matrix_location_pairs"] = max_pairs
        limits[costing]["max_matrix_distance"] = max(
            float(limits[costing]["max_matrix_distance"]), DEFAULT_MAX_MATRIX_DISTANCE_M
        )
        limits[costing]["max_locations"] = max(
            int(limits[costing]["max_locations"]), max_route_locations
        )
    return config


def _source_stamp(pbf: Path) -> dict[str, Any]:
    st = pbf.stat()
    return {"pbf": str(pbf), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)


def _run(cmd: list[str], what: str) -> None:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-20:])
        raise RoadDataError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    log.debug("%s took %.2f s:\n%s", what, time.perf_counter() - t0, output)
