"""Travel-time providers (geo.travel) on the committed Andorra extract."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import valhalla

from geo.osm import street_points
from geo.travel import (
    CachedProvider,
    Matrix,
    Point,
    StraightLineProvider,
    ValhallaProvider,
    haversine_m,
    provider_from_settings,
)
from tests.factories import ANDORRA_PBF

ANDORRA_LA_VELLA: Point = (1.5244, 42.5080)  # Plaça del Poble area, on Avinguda Meritxell
ENCAMP: Point = (1.5805, 42.5335)
COMA_PEDROSA: Point = (1.4446, 42.5917)  # the summit: 2.6 km from the nearest road
SPAIN: Point = (1.0, 42.0)  # outside the extract


@pytest.fixture(scope="module")
def valhalla_provider(andorra_roads: Path) -> ValhallaProvider:
    return ValhallaProvider(andorra_roads.parent)


@pytest.fixture(scope="module")
def street_sample() -> list[Point]:
    return [(lon, lat) for lon, lat, _ in street_points(ANDORRA_PBF, 12, seed=7)]


def assert_square_zero_diagonal(m: Matrix, n: int) -> None:
    assert len(m) == n
    for table in (m.durations, m.distances):
        assert table.shape == (n, n) and table.dtype == np.int64
        assert (table >= 0).all()
        assert all(table[i][i] == 0 for i in range(n))


# --------------------------------------------------------------------------- straight line


def test_haversine_one_degree_of_latitude() -> None:
    assert haversine_m((0.0, 0.0), (0.0, 1.0)) == pytest.approx(111_195.08, abs=0.01)
    assert haversine_m((0.0, 0.0), (1.0, 0.0)) == pytest.approx(
        111_195.08, abs=0.01
    )  # on the equator
    assert haversine_m(ANDORRA_LA_VELLA, ENCAMP) == pytest.approx(5_401.7, abs=0.1)


def test_straight_line_exact_numbers() -> None:
    m = StraightLineProvider().matrix([(0.0, 0.0), (0.0, 1.0)])
    # 111 195.08 m x 1.3 = 144 553.6 m; at 30 km/h (8.333 m/s) = 17 346.4 s
    assert m.distances.tolist() == [[0, 144_554], [144_554, 0]]
    assert m.durations.tolist() == [[0, 17_346], [17_346, 0]]
    assert m.provider == "straight_line" and m.fallback_pairs == 0 and m.off_network == ()

    plain = StraightLineProvider(detour_factor=1.0, speed_kmh=36).matrix([(0.0, 0.0), (0.0, 1.0)])
    assert plain.distances[0][1] == 111_195
    assert plain.durations[0][1] == 11_120  # 10 m/s


def test_straight_line_matrix_shape_and_symmetry() -> None:
    pts = [ANDORRA_LA_VELLA, ENCAMP, COMA_PEDROSA, ANDORRA_LA_VELLA]
    m = StraightLineProvider().matrix(pts)
    assert_square_zero_diagonal(m, 4)
    assert m.durations[0][3] == 0  # same place twice
    assert all(m.distances[i][j] == m.distances[j][i] for i in range(4) for j in range(4))


def test_straight_line_geometry_is_the_stops() -> None:
    g = StraightLineProvider().route_geometry([ANDORRA_LA_VELLA, ENCAMP, ANDORRA_LA_VELLA])
    assert g == {
        "type": "LineString",
        "coordinates": [[1.5244, 42.508], [1.5805, 42.5335], [1.5244, 42.508]],
    }
    single = StraightLineProvider().route_geometry([ENCAMP])
    assert single["coordinates"] == [[1.5805, 42.5335], [1.5805, 42.5335]]


def test_straight_line_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        StraightLineProvider(detour_factor=0.9)
    with pytest.raises(ValueError):
        StraightLineProvider(speed_kmh=0)
    with pytest.raises(ValueError):
        StraightLineProvider().matrix([(42.5, 181.0)])
    with pytest.raises(ValueError):
        StraightLineProvider().route_geometry([])


def test_empty_and_single_point_matrices(valhalla_provider: ValhallaProvider) -> None:
    for provider in (StraightLineProvider(), valhalla_provider):
        assert len(provider.matrix([])) == 0
        assert provider.matrix([ENCAMP]).durations.tolist() == [[0]]


def test_matrix_must_be_square() -> None:
    with pytest.raises(ValueError):
        Matrix(((0, 1),), ((0, 1),), "x")


# --------------------------------------------------------------------------- valhalla


def test_valhalla_andorra_la_vella_to_encamp(valhalla_provider: ValhallaProvider) -> None:
    m = valhalla_provider.matrix([ANDORRA_LA_VELLA, ENCAMP])
    assert m.provider == "valhalla" and m.fallback_pairs == 0 and m.off_network == ()
    assert_square_zero_diagonal(m, 2)
    crow = haversine_m(ANDORRA_LA_VELLA, ENCAMP)  # 5.4 km
    # Measured: 7.55 km / 468 s up the valley (CG-2), 6.58 km / 398 s back down
    # (one-way streets in the centre make the directions differ).
    for i, j in ((0, 1), (1, 0)):
        assert crow * 1.1 < m.distances[i][j] < crow * 1.6
        assert 6_000 < m.distances[i][j] < 8_500
        assert 5 * 60 < m.durations[i][j] < 10 * 60
    assert m.distances[0][1] != m.distances[1][0]


def test_valhalla_street_sample_is_square_and_plausible(
    valhalla_provider: ValhallaProvider, street_sample: list[Point]
) -> None:
    m = valhalla_provider.matrix(street_sample)
    n = len(street_sample)
    assert_square_zero_diagonal(m, n)
    assert m.fallback_pairs == 0
    for i in range(n):
        for j in range(n):
            if i != j:
                # The road is never shorter than the crow flies (10 m: snapping slack).
                assert m.distances[i][j] >= haversine_m(street_sample[i], street_sample[j]) - 10
                # Between 5 and 120 km/h on average.
                assert (
                    m.distances[i][j] / 33.4 <= m.durations[i][j] <= m.distances[i][j] / 1.38 + 60
                )


@pytest.mark.parametrize("max_pairs", [1, 10, 50])
def test_chunked_matrix_equals_one_call(
    andorra_roads: Path,
    valhalla_provider: ValhallaProvider,
    street_sample: list[Point],
    max_pairs: int,
) -> None:
    whole = valhalla_provider.matrix(street_sample)
    assert len(street_sample) ** 2 <= valhalla_provider.max_pairs  # really one call
    chunked = ValhallaProvider(andorra_roads.parent, max_pairs=max_pairs).matrix(street_sample)
    assert chunked == whole


def test_off_network_point_falls_back_to_straight_line(valhalla_provider: ValhallaProvider) -> None:
    pts = [ANDORRA_LA_VELLA, ENCAMP, COMA_PEDROSA, SPAIN]
    before = valhalla_provider.fallback_pairs_total
    m = valhalla_provider.matrix(pts)
    assert_square_zero_diagonal(m, 4)
    assert m.off_network == (2, 3)
    assert m.fallback_pairs == 10  # every ordered pair touching point 2 or 3
    assert valhalla_provider.fallback_pairs_total == before + 10
    straight = StraightLineProvider().matrix(pts)
    for i in range(4):
        for j in (2, 3):
            assert m.durations[i][j] == straight.durations[i][j]
            assert m.distances[j][i] == straight.distances[j][i]
    # The road pair is still priced by road.
    assert m.durations[0][1] == valhalla_provider.matrix([ANDORRA_LA_VELLA, ENCAMP]).durations[0][1]


def test_snap_radius_decides_what_is_off_network(andorra_roads: Path) -> None:
    wide = ValhallaProvider(andorra_roads.parent, snap_radius_m=5_000)
    assert wide.snappable([COMA_PEDROSA, SPAIN]) == [True, False]
    m = wide.matrix([ANDORRA_LA_VELLA, COMA_PEDROSA])
    assert m.off_network == () and m.fallback_pairs == 0
    # Priced from the road end at ~2.6 km away: longer than the straight line.
    assert m.distances[0][1] > haversine_m(ANDORRA_LA_VELLA, COMA_PEDROSA)


def test_failed_valhalla_request_is_priced_by_straight_line(andorra_roads: Path) -> None:
    provider = ValhallaProvider(andorra_roads.parent)
    real = provider._actor()

    class FailingMatrix:
        def locate(self, req: dict[str, Any]) -> Any:
            return real.locate(req)

        def matrix(self, req: dict[str, Any]) -> Any:
            raise valhalla.ValhallaError("simulated failure")

    provider._local.actor = FailingMatrix()
    pts = [ANDORRA_LA_VELLA, ENCAMP, ANDORRA_LA_VELLA]
    m = provider.matrix(pts)
    straight = StraightLineProvider().matrix(pts)
    assert m.durations.tolist() == straight.durations.tolist()
    assert m.distances.tolist() == straight.distances.tolist()
    assert m.provider == "valhalla" and m.fallback_pairs == 6 and m.off_network == ()
    assert provider.fallback_pairs_total == 6


def _near(a: Sequence[float], b: Point, metres: float) -> bool:
    return haversine_m((a[0], a[1]), b) < metres


def _length_m(coords: list[list[float]]) -> float:
    return sum(
        haversine_m((a[0], a[1]), (b[0], b[1])) for a, b in zip(coords, coords[1:], strict=False)
    )


def test_valhalla_route_geometry(valhalla_provider: ValhallaProvider) -> None:
    stops = [ANDORRA_LA_VELLA, ENCAMP, ANDORRA_LA_VELLA]
    g: dict[str, Any] = valhalla_provider.route_geometry(stops)
    assert g["type"] == "LineString"
    coords = g["coordinates"]
    assert len(coords) > 100
    assert _near(coords[0], ANDORRA_LA_VELLA, 50) and _near(coords[-1], ANDORRA_LA_VELLA, 50)
    assert min(haversine_m((c[0], c[1]), ENCAMP) for c in coords) < 50
    m = valhalla_provider.matrix([ANDORRA_LA_VELLA, ENCAMP])
    # The drawn line is the road the matrix priced (there and back), within 2 %.
    assert _length_m(coords) == pytest.approx(m.distances[0][1] + m.distances[1][0], rel=0.02)
    assert all(a != b for a, b in zip(coords, coords[1:], strict=False))  # no repeated joints


def test_route_geometry_split_into_requests_is_the_same_line(
    andorra_roads: Path,
    valhalla_provider: ValhallaProvider,
    street_sample: list[Point],
) -> None:
    stops = street_sample[:7]
    small = ValhallaProvider(andorra_roads.parent)
    small.max_locations = 3  # 6 legs in three requests
    assert small.route_geometry(stops) == valhalla_provider.route_geometry(stops)


def test_route_geometry_draws_straight_legs_to_off_network_stops(
    valhalla_provider: ValhallaProvider,
) -> None:
    g = valhalla_provider.route_geometry([ANDORRA_LA_VELLA, ENCAMP, COMA_PEDROSA])
    coords = g["coordinates"]
    assert coords[-1] == [1.4446, 42.5917] and coords[-2] == [1.5805, 42.5335]
    assert len(coords) > 100  # the first leg is still on the road


def test_one_actor_per_thread(
    valhalla_provider: ValhallaProvider, street_sample: list[Point]
) -> None:
    expected = valhalla_provider.matrix(street_sample)
    actors: list[object] = []
    results: list[Matrix] = []

    def work() -> None:
        results.append(valhalla_provider.matrix(street_sample))
        actors.append(valhalla_provider._actor())

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 3
    assert len({id(a) for a in actors}) == 3 and valhalla_provider._actor() not in actors


def test_missing_road_data_is_a_clear_error(tmp_path: Path) -> None:
    from geo.roads import RoadDataError

    with pytest.raises(RoadDataError, match="roads build"):
        ValhallaProvider(tmp_path)


# --------------------------------------------------------------------------- cache and settings


class CountingProvider:
    name = "counting"

    def __init__(self) -> None:
        self.calls = 0
        self.inner = StraightLineProvider()

    def matrix(self, points: Sequence[Point]) -> Matrix:
        self.calls += 1
        return self.inner.matrix(points)

    def route_geometry(self, points: Sequence[Point]) -> dict[str, Any]:
        return self.inner.route_geometry(points)


def test_cache_returns_the_same_matrix_and_calls_inner_once() -> None:
    inner = CountingProvider()
    cached = CachedProvider(inner, maxsize=2)
    pts = [ANDORRA_LA_VELLA, ENCAMP]
    first = cached.matrix(pts)
    assert cached.matrix(list(pts)) is first
    # Float noise well below 1e-6 deg is the same point set.
    assert cached.matrix([(1.5244 + 1e-9, 42.5080), (1.5805, 42.5335 - 1e-9)]) is first
    assert inner.calls == 1 and cached.hits == 2 and cached.misses == 1
    assert cached.name == "counting" and first.provider == "straight_line"

    # Order matters: rows follow the points.
    assert cached.matrix(pts[::-1]) is not first
    assert inner.calls == 2


def test_cache_evicts_least_recently_used() -> None:
    inner = CountingProvider()
    cached = CachedProvider(inner, maxsize=2)
    a, b, c = [ENCAMP], [ANDORRA_LA_VELLA], [COMA_PEDROSA]
    cached.matrix(a)
    cached.matrix(b)
    cached.matrix(a)  # a is now the most recent
    cached.matrix(c)  # evicts b
    cached.matrix(a)
    assert inner.calls == 3
    cached.matrix(b)
    assert inner.calls == 4


def test_provider_from_settings(andorra_roads: Path, tmp_path: Path) -> None:
    straight = provider_from_settings(None, detour_factor=1.5, speed_kmh=20)
    assert isinstance(straight, CachedProvider) and straight.name == "straight_line"
    assert isinstance(straight.inner, StraightLineProvider)
    assert straight.inner.detour_factor == 1.5 and straight.inner.speed_kmh == 20

    road = provider_from_settings(andorra_roads.parent)
    assert road.name == "valhalla"
    assert road.matrix([ANDORRA_LA_VELLA, ENCAMP]).provider == "valhalla"

    unbuilt = provider_from_settings(tmp_path, cache_size=0)
    assert isinstance(unbuilt, StraightLineProvider)
    assert math.isclose(unbuilt.detour_factor, 1.3)
