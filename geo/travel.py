"""Travel-time providers: duration and distance matrices, and route geometry.

A provider turns lon/lat points into integer seconds and metres for the
solver (which never sees geometry), as the solver's own ``dispatch.model.Matrix``
(no second matrix type, no conversion between them), and draws a crew's ordered stops as a
GeoJSON LineString for the crew app. Two providers:

- ``ValhallaProvider``: road network travel from tiles built by
  ``geo.roads.build_tiles``, in process (pyvalhalla), one Actor per thread.
- ``StraightLineProvider``: haversine distance times a detour factor at a
  constant speed, for when no road data is configured.

``CachedProvider`` wraps either so a plan computes its matrix once, and
``provider_from_settings`` picks one from configuration.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import valhalla
from valhalla.midgard.utils import decode_polyline

from geo.earth import EARTH_RADIUS_M
from geo.matrix import Matrix  # the solver's own: providers fill it, nothing converts it
from geo.roads import CONFIG_NAME, RoadDataError

log = logging.getLogger(__name__)

Point = tuple[float, float]
"""(lon, lat) in degrees, EPSG:4326."""

_ROUND_DEG = 6  # 1e-6 deg is ~0.1 m: finer than any GPS fix, coarser than float noise


class TravelTimeProvider(Protocol):
    """Anything that can price travel between points."""

    name: str

    def matrix(self, points: Sequence[Point]) -> Matrix:
        """Duration and distance between every ordered pair of ``points``."""
        ...

    def route_geometry(self, points: Sequence[Point]) -> dict[str, Any]:
        """GeoJSON LineString geometry visiting ``points`` in order."""
        ...


# --------------------------------------------------------------------------- straight line


def haversine_m(a: Point, b: Point) -> float:
    """Great-circle distance in metres between two (lon, lat) points."""
    return float(_haversine(np.array([a], dtype=float), np.array([b], dtype=float))[0, 0])


def _haversine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Pairwise great-circle metres between (n, 2) and (m, 2) lon/lat arrays."""
    lon1, lat1 = np.radians(src[:, 0])[:, None], np.radians(src[:, 1])[:, None]
    lon2, lat2 = np.radians(dst[:, 0])[None, :], np.radians(dst[:, 1])[None, :]
    h = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _points_array(points: Sequence[Point]) -> np.ndarray:
    arr = np.asarray(points, dtype=float).reshape(-1, 2)
    if (
        not np.isfinite(arr).all()
        or (np.abs(arr[:, 0]) > 180).any()
        or (np.abs(arr[:, 1]) > 90).any()
    ):
        raise ValueError("points must be finite (lon, lat) pairs with |lon| <= 180 and |lat| <= 90")
    return arr


def _line(coords: Sequence[Sequence[float]]) -> dict[str, Any]:
    out: list[list[float]] = []
    for lon, lat in coords:
        c = [round(float(lon), _ROUND_DEG), round(float(lat), _ROUND_DEG)]
        if not out or out[-1] != c:
            out.append(c)
    if len(out) == 1:
        # GeoJSON needs two positions; a route with all stops in one place is a point-like line.
        out.append(list(out[0]))
    return {"type": "LineString", "coordinates": out}


class StraightLineProvider:
    """Haversine distance times ``detour_factor``, driven at ``speed_kmh``.

    Durations are derived from the detoured distance, so both matrices stay
    consistent with each other. Values are rounded to the nearest second/metre.
    """

    name = "straight_line"

    def __init__(self, detour_factor: float = 1.3, speed_kmh: float = 30.0) -> None:
        if detour_factor < 1.0:
            raise ValueError(
                "detour_factor must be >= 1 (roads are never shorter than the straight line)"
            )
        if speed_kmh <= 0:
            raise ValueError("speed_kmh must be positive")
        self.detour_factor = float(detour_factor)
        self.speed_kmh = float(speed_kmh)

    def arrays(self, src: Sequence[Point], dst: Sequence[Point]) -> tuple[np.ndarray, np.ndarray]:
        """(seconds, metres) int64 arrays of shape (len(src), len(dst))."""
        metres = _haversine(_points_array(src), _points_array(dst)) * self.detour_factor
        seconds = metres / (self.speed_kmh / 3.6)
        return np.rint(seconds).astype(np.int64), np.rint(metres).astype(np.int64)

    def matrix(self, points: Sequence[Point]) -> Matrix:
        """Straight-line duration and distance matrices for ``points``."""
        seconds, metres = self.arrays(points, points)
        return Matrix(seconds, metres, self.name)

    def route_geometry(self, points: Sequence[Point]) -> dict[str, Any]:
        """Straight segments through ``points`` in order."""
        if not points:
            raise ValueError("route_geometry needs at least one point")
        _points_array(points)
        return _line(points)


# --------------------------------------------------------------------------- valhalla


class ValhallaProvider:
    """Road travel times from Valhalla tiles built by ``geo.roads.build_tiles``.

    ``data_dir`` is the folder ``build_tiles`` wrote (or its ``valhalla.json``).
    Each thread gets its own ``valhalla.Actor``, since an Actor is not meant
    to be shared between threads; Valhalla releases the GIL while it routes,
    so threads do run in parallel.

    Points farther than ``snap_radius_m`` from a drivable road are
    "off-network": all their pairs are straight-line estimates from
    ``fallback`` (as are pairs Valhalla finds no route for) and are counted
    in ``Matrix.fallback_pairs`` / ``Matrix.off_network`` and in the
    provider-lifetime ``fallback_pairs_total``.
    """

    name = "valhalla"

    def __init__(
        self,
        data_dir: Path,
        costing: str = "auto",
        *,
        snap_radius_m: float = 500.0,
        max_pairs: int | None = None,
        fallback: StraightLineProvider | None = None,
    ) -> None:
        data_dir = Path(data_dir)
        self.config_path = (data_dir if data_dir.is_file() else data_dir / CONFIG_NAME).resolve()
        try:
            config = json.loads(self.config_path.read_text())
        except FileNotFoundError:
            raise RoadDataError(
                f"no Valhalla config at {self.config_path}; run `streetloop roads build --pbf FILE`"
            ) from None
        mjolnir = config.get("mjolnir", {})
        extract, tile_dir = mjolnir.get("tile_extract"), mjolnir.get("tile_dir")
        if not (extract and Path(extract).is_file()) and not (tile_dir and Path(tile_dir).is_dir()):
            raise RoadDataError(
                f"{self.config_path} points at tiles that do not exist ({extract}, {tile_dir})"
            )
        limits = config.get("service_limits", {}).get(costing)
        if not limits or "max_matrix_location_pairs" not in limits:
            raise ValueError(f"costing {costing!r} has no matrix limits in {self.config_path}")
        config_pairs = int(limits["max_matrix_location_pairs"])
        if max_pairs is not None and not 1 <= max_pairs <= config_pairs:
            raise ValueError(f"max_pairs must be between 1 and the configured {config_pairs}")
        self.costing = costing
        self.snap_radius_m = float(snap_radius_m)
        self.max_pairs = max_pairs or config_pairs
        # Route and locate requests are capped by the same per-costing count.
        self.max_locations = max(2, int(limits.get("max_locations", 20)))
        self.fallback = fallback or StraightLineProvider()
        self.fallback_pairs_total = 0
        self._count_lock = threading.Lock()
        self._local = threading.local()

    def _actor(self) -> valhalla.Actor:
        actor = getattr(self._local, "actor", None)
        if actor is None:
            actor = self._local.actor = valhalla.Actor(self.config_path)
        return actor

    def _location(self, p: Point) -> dict[str, float]:
        # search_cutoff bounds the snap: without it Valhalla snaps up to 35 km
        # away, and a hilltop job would silently be priced from a far road.
        return {"lon": float(p[0]), "lat": float(p[1]), "search_cutoff": self.snap_radius_m}

    def snappable(self, points: Sequence[Point]) -> list[bool]:
        """Whether each point lies within ``snap_radius_m`` of a road usable by this costing."""
        actor = self._actor()
        out: list[bool] = []
        for start in range(0, len(points), self.max_locations):
            chunk = points[start : start + self.max_locations]
            res = actor.locate(
                {
                    "locations": [self._location(p) for p in chunk],
                    "costing": self.costing,
                    "verbose": False,
                }
            )
            out.extend(bool(r.get("edges")) for r in res)
        return out

    def matrix(self, points: Sequence[Point]) -> Matrix:
        """Road duration and distance matrices, chunked to ``max_pairs`` per Valhalla request."""
        pts = [(float(lon), float(lat)) for lon, lat in points]
        n = len(pts)
        fb_seconds, fb_metres = self.fallback.arrays(pts, pts)
        seconds = np.full((n, n), -1, dtype=np.int64)
        metres = np.full((n, n), -1, dtype=np.int64)

        ok = self.snappable(pts) if n > 1 else [True] * n
        on = [i for i in range(n) if ok[i]]
        m = len(on)
        if m > 1:
            locs = [self._location(pts[i]) for i in on]
            # Blocks of at most max_pairs sources x targets; full target rows when they fit.
            tgt_block = min(m, self.max_pairs)
            src_block = max(1, self.max_pairs // tgt_block)
            idx = np.asarray(on)
            for s0 in range(0, m, src_block):
                for t0 in range(0, m, tgt_block):
                    try:
                        res = self._actor().matrix(
                            {
                                "sources": locs[s0 : s0 + src_block],
                                "targets": locs[t0 : t0 + tgt_block],
                                "costing": self.costing,
                                "units": "kilometers",
                                "verbose": False,
                            }
                        )["sources_to_targets"]
                    except valhalla.ValhallaError as exc:
                        # E.g. a point that locates but sits on a tiny isolated
                        # road piece: price the block by straight line (counted
                        # below) rather than fail the whole plan.
                        log.warning(
                            "valhalla: matrix block failed (%s); straight-line estimates used", exc
                        )
                        continue
                    # None (no route) becomes NaN, then -1 below, then fallback.
                    dur = np.array(res["durations"], dtype=float)
                    dist = np.array(res["distances"], dtype=float) * 1000.0
                    rows = idx[s0 : s0 + src_block][:, None]
                    cols = idx[t0 : t0 + tgt_block][None, :]
                    seconds[rows, cols] = np.where(np.isnan(dur), -1, np.rint(np.nan_to_num(dur)))
                    metres[rows, cols] = np.where(np.isnan(dist), -1, np.rint(np.nan_to_num(dist)))

        np.fill_diagonal(seconds, 0)
        np.fill_diagonal(metres, 0)
        missing = (seconds < 0) | (metres < 0)
        seconds[missing] = fb_seconds[missing]
        metres[missing] = fb_metres[missing]
        fallback_pairs = int(missing.sum())
        off = tuple(i for i in range(n) if not ok[i])
        if fallback_pairs:
            with self._count_lock:
                self.fallback_pairs_total += fallback_pairs
            log.warning(
                "valhalla: %d of %d pairs estimated by straight line (%d points off the road network)",
                fallback_pairs,
                n * (n - 1),
                len(off),
            )
        return Matrix(seconds, metres, self.name, fallback_pairs, off)

    def route_geometry(self, points: Sequence[Point]) -> dict[str, Any]:
        """Road geometry through ``points`` in order; legs Valhalla cannot route are straight segments."""
        if not points:
            raise ValueError("route_geometry needs at least one point")
        pts = [(float(lon), float(lat)) for lon, lat in points]
        _points_array(pts)
        if len(pts) == 1:
            return _line(pts)
        coords: list[tuple[float, float]] = []
        step = self.max_locations - 1
        for start in range(0, len(pts) - 1, step):
            coords.extend(self._route_chunk(pts[start : start + step + 1]))
        return _line(coords)

    def _route_chunk(self, pts: list[Point]) -> list[tuple[float, float]]:
        try:
            return self._route_shape(pts)
        except valhalla.ValhallaError as exc:
            if len(pts) == 2:
                log.warning(
                    "valhalla: no route %s -> %s (%s); drawing a straight segment",
                    pts[0],
                    pts[1],
                    exc,
                )
                return list(pts)
        # One bad stop fails the whole request; retry leg by leg to keep the good legs.
        out: list[tuple[float, float]] = []
        for a, b in zip(pts, pts[1:], strict=False):
            out.extend(self._route_chunk([a, b]))
        return out

    def _route_shape(self, pts: list[Point]) -> list[tuple[float, float]]:
        res = self._actor().route(
            {
                "locations": [self._location(p) for p in pts],
                "costing": self.costing,
                "directions_type": "none",
            }
        )
        out: list[tuple[float, float]] = []
        for leg in res["trip"]["legs"]:
            out.extend(decode_polyline(leg["shape"], 6, "lnglat"))
        return out


# --------------------------------------------------------------------------- cache and settings


class CachedProvider:
    """Memoises ``matrix`` by the exact ordered point list (rounded to 1e-6 deg), LRU.

    The same points in the same order return the very same ``Matrix``
    object. Thread-safe; two threads asking for a new point list at once may
    both compute it (the work is idempotent, and not holding the lock while
    Valhalla runs keeps other plans moving). Route geometry is not cached.
    """

    def __init__(self, inner: TravelTimeProvider, maxsize: int = 16) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.inner = inner
        self.name = inner.name
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._cache: OrderedDict[tuple[Point, ...], Matrix] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(points: Sequence[Point]) -> tuple[Point, ...]:
        """Cache key: the ordered points rounded to ~0.1 m (order matters: rows follow it)."""
        # + 0.0 folds -0.0 into 0.0 so both spell the same key.
        return tuple(
            (round(float(lon), _ROUND_DEG) + 0.0, round(float(lat), _ROUND_DEG) + 0.0)
            for lon, lat in points
        )

    def matrix(self, points: Sequence[Point]) -> Matrix:
        """The inner provider's matrix for ``points``, computed at most once while cached."""
        key = self.key(points)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                return hit
            self.misses += 1
        result = self.inner.matrix(points)
        with self._lock:
            result = self._cache.setdefault(key, result)
            self._cache.move_to_end(key)
            while len(self._cache) > self.maxsize:
                self._cache.popitem(last=False)
        return result

    def route_geometry(self, points: Sequence[Point]) -> dict[str, Any]:
        """The inner provider's route geometry (uncached)."""
        return self.inner.route_geometry(points)


def provider_from_settings(
    road_data_dir: Path | None,
    detour_factor: float = 1.3,
    speed_kmh: float = 30.0,
    *,
    costing: str = "auto",
    cache_size: int = 16,
) -> TravelTimeProvider:
    """Valhalla when ``road_data_dir`` holds built tiles, else straight-line; cached unless ``cache_size`` is 0.

    ``detour_factor`` and ``speed_kmh`` set the straight-line provider, which
    Valhalla also uses for pairs it cannot route. A configured but unbuilt
    folder logs a warning and falls back (``Matrix.provider`` records which
    provider priced a plan).
    """
    straight = StraightLineProvider(detour_factor, speed_kmh)
    provider: TravelTimeProvider = straight
    if road_data_dir is not None:
        try:
            provider = ValhallaProvider(Path(road_data_dir), costing, fallback=straight)
        except RoadDataError as exc:
            log.warning("road data unusable, using straight-line travel times: %s", exc)
    return CachedProvider(provider, cache_size) if cache_size > 0 else provider
