"""Building Valhalla tiles from the committed Andorra extract (geo.roads)."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
import valhalla

from geo import roads
from geo.roads import (
    CONFIG_NAME,
    EXTRACT_NAME,
    MANIFEST_NAME,
    TILE_DIR_NAME,
    RoadDataError,
    build_tiles,
    valhalla_binary,
)

PBF = Path(__file__).resolve().parents[2] / "data/osm/andorra.osm.pbf"


def test_build_writes_config_tiles_extract_and_manifest(andorra_roads: Path) -> None:
    out = andorra_roads.parent
    assert andorra_roads == out / CONFIG_NAME
    config = json.loads(andorra_roads.read_text())
    assert config["mjolnir"]["tile_dir"] == str(out / TILE_DIR_NAME)
    assert config["mjolnir"]["tile_extract"] == str(out / EXTRACT_NAME)
    assert config["thor"]["source_to_target_algorithm"] == "timedistancematrix"
    auto = config["service_limits"]["auto"]
    assert auto["max_matrix_location_pairs"] == 250_000
    assert auto["max_matrix_distance"] >= 400_000  # Andorra is ~30 km across
    assert auto["max_locations"] >= 500

    # Andorra fits in 7 tiles: one per level 0/1, five at level 2 (measured).
    gph = sorted(
        p.relative_to(out / TILE_DIR_NAME).parts[0] for p in (out / TILE_DIR_NAME).rglob("*.gph")
    )
    assert gph == ["0", "1", "2", "2", "2", "2", "2"]
    with tarfile.open(out / EXTRACT_NAME) as tar:
        names = tar.getnames()
    assert names[0] == "index.bin"  # Valhalla's mmap index must come first
    assert len([n for n in names if n.endswith(".gph")]) == 7
    assert 300_000 < (out / EXTRACT_NAME).stat().st_size < 3_000_000  # 696 kB when written

    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["source"]["pbf"] == str(PBF)
    assert manifest["valhalla_version"] == valhalla.__version__
    # How long a build takes is bench/travel_matrix.py's to measure ("tile build: ... s").
    assert manifest["seconds"] > 0
    assert not list(out.glob(".build-*"))  # work folder cleaned up


def test_config_loads_in_an_actor(andorra_roads: Path) -> None:
    actor = valhalla.Actor(andorra_roads)
    res = actor.locate(
        {"locations": [{"lon": 1.5244, "lat": 42.5080}], "costing": "auto", "verbose": False}
    )
    assert res[0]["edges"]


def test_rebuild_is_skipped_unless_source_changes_or_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pbf = tmp_path / "andorra.osm.pbf"
    shutil.copy(PBF, pbf)
    out = tmp_path / "roads"
    config = build_tiles(pbf, out)
    first = (out / EXTRACT_NAME).stat().st_mtime_ns

    def no_valhalla_tool(cmd: list[str], what: str) -> None:
        raise AssertionError(f"{what} was run: the build was not skipped")

    with monkeypatch.context() as m:
        m.setattr(roads, "_run", no_valhalla_tool)
        assert build_tiles(pbf, out, max_matrix_location_pairs=1_000) == config
    assert (out / EXTRACT_NAME).stat().st_mtime_ns == first
    # New limits are applied without a rebuild.
    assert (
        json.loads(config.read_text())["service_limits"]["auto"]["max_matrix_location_pairs"]
        == 1_000
    )

    st = pbf.stat()
    os.utime(pbf, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    build_tiles(pbf, out)
    second = (out / EXTRACT_NAME).stat().st_mtime_ns
    assert second != first

    build_tiles(pbf, out, force=True)
    assert (out / EXTRACT_NAME).stat().st_mtime_ns != second


def test_missing_pbf_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RoadDataError, match="OSM extract not found"):
        build_tiles(tmp_path / "nope.osm.pbf", tmp_path / "roads")


def test_corrupt_pbf_reports_valhallas_error_and_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.osm.pbf"
    bad.write_bytes(b"\x00\x00\xff\xff not a pbf" * 50)
    out = tmp_path / "roads"
    with pytest.raises(RoadDataError, match="valhalla_build_tiles failed"):
        build_tiles(bad, out)
    assert list(out.iterdir()) == []


def test_binaries_come_from_the_installed_package() -> None:
    path = valhalla_binary("valhalla_build_tiles")
    assert path.is_absolute() and path.parent == Path(valhalla.__file__).resolve().parent / "bin"
    with pytest.raises(RoadDataError, match="not found"):
        valhalla_binary("valhalla_no_such_tool")
