"""The CitiStat page's district map: each district shaded by one figure, as inline SVG.

Drawn on the server from the district polygons (no script, no tiles, nothing fetched):
the outlines are simplified by PostGIS to half a pixel of the drawing, projected with a
local equirectangular projection fitted to the districts' bounds (longitude scaled by
the cosine of the middle latitude, so a city keeps its proportions; over a city the
error of that against a conformal projection is far below a pixel), and filled with one
of five shades of a single hue, which stays in order when printed in black and white.

The legend gives each shade's range; every district carries its name and figure as a
label and a `<title>`; the same figures are in the district table under the map, which
is the text alternative for people who cannot see it."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from markupsafe import Markup, escape
from sqlalchemy.orm import Session

from reports import citistat

WIDTH = 640  # the drawing's width in CSS pixels: it is shown at this size, so its labels are too
MAX_HEIGHT = 520
MARGIN = 12
# ColorBrewer "Blues", 5 classes: sequential, colour-blind safe, ordered in greyscale.
SHADES = ("#eff3ff", "#bdd7e7", "#6baed6", "#3182bd", "#08519c")


def verified_share(r: citistat.Figures) -> float | None:
    """Completions whose proof stands (verified automatically or by a supervisor), of all."""
    if not r.completions:
        return None
    return round(
        (r.completions_auto_verified + r.completions_verified_by_supervisor) / r.completions, 4
    )


@dataclass(frozen=True)
class MapFigure:
    key: str
    label: str  # as the control and the caption say it
    value: Callable[[citistat.Figures], float | int | None]
    rate: bool  # a share (0..1) rather than a count
    no_value: str  # what a district without a value is, in the legend


FIGURES = {
    f.key: f
    for f in (
        MapFigure(
            "on_time", "On-time rate", lambda r: r.on_time_rate, True, "nothing closed or due yet"
        ),
        MapFigure("backlog", "Backlog", lambda r: r.open, False, "no requests in the period"),
        MapFigure(
            "verified", "Verified share", verified_share, True, "no completions in the period"
        ),
    )
}
DEFAULT_FIGURE = "on_time"


@dataclass(frozen=True)
class Scale:
    """Classes of equal width from `low`; `step` wide; `count` of them (at most 5)."""

    low: float
    step: float
    count: int
    rate: bool

    def index(self, value: float) -> int:
        # A small epsilon so that 80 % falls in 80–90 %, not in 70–80 %, after float division.
        return max(0, min(self.count - 1, math.floor((value - self.low) / self.step + 1e-9)))

    def shade(self, index: int) -> str:
        # Fewer classes than shades: spread them over the whole ramp, lightest to darkest.
        if self.count == 1:
            return SHADES[2]
        return SHADES[round(index * (len(SHADES) - 1) / (self.count - 1))]

    def label(self, index: int) -> str:
        lo = self.low + index * self.step
        if self.rate:
            return f"{lo * 100:.0f}–{(lo + self.step) * 100:.0f} %"
        hi = lo + self.step - 1  # counts are whole: 0–4, 5–9
        return f"{lo:.0f}" if hi == lo else f"{lo:.0f}–{hi:.0f}"


def _nice(x: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50... that is >= x."""
    if x <= 1:
        return 1
    power = 10 ** math.floor(math.log10(x))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= x)


def scale_for(values: list[float], rate: bool) -> Scale:
    """Rates: five classes from the lowest value to the highest, both rounded out to tens
    of percent (so a city whose districts are all between 20 and 50 % still sees them
    apart; a week later the classes may differ, the legend says which). Counts: classes
    of a round width from 0, as many as the largest count needs."""
    if rate:
        if not values:
            return Scale(0, 0.2, 5, True)
        low = math.floor(min(values) * 10 + 1e-9) / 10
        high = min(1.0, max(math.ceil(max(values) * 10 - 1e-9) / 10, low + 0.1))
        low = min(low, high - 0.1)
        return Scale(low, (high - low) / 5, 5, True)
    top = max(values, default=0)
    step = _nice((top + 1) / 5)
    return Scale(0, step, min(5, math.floor(top / step) + 1), False)


@dataclass(frozen=True)
class Projection:
    """lon/lat to the drawing's pixels: x east, y down, fitted into WIDTH x MAX_HEIGHT."""

    west: float
    north: float
    kx: float  # pixels per degree of longitude
    ky: float  # pixels per degree of latitude
    height: int

    @classmethod
    def fit(cls, west: float, south: float, east: float, north: float) -> Projection:
        shrink = math.cos(math.radians((south + north) / 2))
        span_x = max((east - west) * shrink, 1e-9)
        span_y = max(north - south, 1e-9)
        k = min((WIDTH - 2 * MARGIN) / span_x, (MAX_HEIGHT - 2 * MARGIN) / span_y)
        return cls(west, north, k * shrink, k, math.ceil(span_y * k + 2 * MARGIN))

    @property
    def half_pixel(self) -> float:
        """Half a pixel in degrees: the simplification tolerance (latitude's, the larger)."""
        return 0.5 / self.ky

    def __call__(self, lon: float, lat: float) -> tuple[float, float]:
        return MARGIN + (lon - self.west) * self.kx, MARGIN + (self.north - lat) * self.ky


def path_data(polygons: list[list[list[tuple[float, float]]]], project: Projection) -> str:
    """SVG path data of a MultiPolygon: one closed subpath per ring (holes drawn by the
    even-odd rule), at a tenth of a pixel, points that round to the one before dropped."""
    parts = []
    for polygon in polygons:
        for ring in polygon:
            points: list[str] = []
            for lon, lat in ring:
                x, y = project(lon, lat)
                p = f"{x:.1f},{y:.1f}"
                if not points or points[-1] != p:
                    points.append(p)
            if len(points) >= 3:
                parts.append("M" + " ".join(points) + "Z")
    return "".join(parts)


CHAR_PX = 7.2  # the mean advance of a character of the 13 px sans-serif labels


def _width_px(polygons: list[list[list[tuple[float, float]]]], project: Projection) -> float:
    xs = [project(lon, lat)[0] for polygon in polygons for lon, lat in polygon[0]]
    return max(xs) - min(xs) if xs else 0.0


def label_lines(name: str, width_px: float) -> list[str]:
    """A district's name in at most two lines about as wide as the district is on the map
    (at least 8 characters a line, so that a sliver of a ward is still named), cut with an
    ellipsis beyond: neighbours' labels then rarely run into each other."""
    per_line = max(8, int(width_px / CHAR_PX))
    lines: list[str] = []
    current = ""
    for word in name.split():
        candidate = f"{current} {word}".strip()
        if len(candidate) <= per_line or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    lines.append(current)
    if len(lines) > 2:
        lines = [lines[0], " ".join(lines[1:])]
    return [line if len(line) <= per_line else line[: per_line - 1] + "…" for line in lines]


@dataclass(frozen=True)
class LegendEntry:
    shade: str | None  # None: the hatched "no value"
    label: str


@dataclass(frozen=True)
class DistrictMap:
    svg: Markup
    legend: list[LegendEntry]
    figure: MapFigure


def district_map(
    session: Session,
    rows: list[citistat.Figures],
    figure: MapFigure,
    fmt: Callable[[float | None], str],
) -> DistrictMap | None:
    """The map of every district shaded by `figure` from the report's rows (by district
    code); None when the city has no districts."""
    extent = citistat.district_extent(session)
    if extent is None:
        return None
    project = Projection.fit(*extent)
    outlines = citistat.district_outlines(session, project.half_pixel)
    by_code = {r.group: r for r in rows if r.group is not None}
    values: dict[str, float | int | None] = {}
    for d in outlines:
        row = by_code.get(d.code)
        # A district with no request in the period has no row: a backlog of 0, and no rate.
        values[d.code] = figure.value(row) if row is not None else (None if figure.rate else 0)
    present = [float(v) for v in values.values() if v is not None]
    scale = scale_for(present, figure.rate)
    show = fmt if figure.rate else (lambda v: str(int(v or 0)))

    parts = [
        f'<svg class="map" role="img" aria-labelledby="map-title" viewBox="0 0 {WIDTH} {project.height}" '
        f'width="{WIDTH}" height="{project.height}" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="map-title">Districts shaded by {escape(figure.label.lower())}; '
        f"the figures are in the district table below</title>",
        # The hatch of districts without a value: not a shade of the scale, so never read as one.
        '<defs><pattern id="nodata" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#8a929b" stroke-width="2"/></pattern></defs>',
    ]
    labels = []
    for d in outlines:
        value = values[d.code]
        name = escape(d.name)
        if value is None:
            fill, text = 'class="nodata" fill="url(#nodata)"', figure.no_value
        else:
            fill, text = f'fill="{scale.shade(scale.index(float(value)))}"', show(value)
        parts.append(
            f'<g class="district" data-code="{escape(d.code)}"><title>{name}: '
            f"{escape(figure.label.lower())} {escape(text)}</title>"
            f'<path {fill} d="{path_data(d.polygons, project)}"/></g>'
        )
        x, y = project(*d.label_at)
        lines = label_lines(d.name, _width_px(d.polygons, project))
        value_text = escape(show(value)) if value is not None else "–"
        # Labels after every shape, so that no neighbour is painted over them; a white halo
        # keeps them legible on the darkest shade. The name's lines above the label point,
        # the figure under it.
        first_dy = -((len(lines) - 1) * 1.15 + 0.2)
        spans = "".join(
            f'<tspan x="{x:.1f}" dy="{first_dy if i == 0 else 1.15:.2f}em">{escape(line)}</tspan>'
            for i, line in enumerate(lines)
        )
        labels.append(
            f'<text class="label" x="{x:.1f}" y="{y:.1f}" text-anchor="middle">{spans}'
            f'<tspan x="{x:.1f}" dy="1.2em" class="figure">{value_text}</tspan></text>'
        )
    parts.extend(labels)
    parts.append("</svg>")
    legend = [LegendEntry(scale.shade(i), scale.label(i)) for i in range(scale.count)]
    if any(v is None for v in values.values()):
        legend.append(LegendEntry(None, figure.no_value))
    return DistrictMap(Markup("".join(parts)), legend, figure)
