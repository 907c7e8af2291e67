"""Public CitiStat: the report page at /citistat and the open-data CSV of requests.

No login: the page shows aggregates only (per district and per service type, no crew,
no person), the export only the columns cities publish (never contact details or the
token). Charts and the district map are inline SVG drawn here, on the server (the map in
api.citistat_map): no script, nothing fetched from another site, and the page prints
as it looks. The figure the map is shaded by is chosen with plain links (`shade=`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, make_response, render_template, request, stream_with_context
from markupsafe import Markup, escape

from api.citistat_map import DEFAULT_FIGURE, FIGURES, MapFigure, district_map, verified_share
from api.db import report_session, settings
from api.inputs import year_problem
from core.errors import ValidationFailed
from reports import citistat

blp = Blueprint("citistat_page", __name__)

DEFAULT_DAYS = 30
# The page is public and computes on request: one year at most per view.
MAX_PAGE_DAYS = 366
CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"


class BadQuery(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _date(name: str) -> date | None:
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        raise BadQuery(name, f"'{name}' must be a date like 2026-03-31, got {raw[:40]!r}") from None
    problem = year_problem(value)
    if problem:
        raise BadQuery(name, f"'{name}': {problem}")
    return value


def _period(max_days: int | None) -> citistat.Period:
    tz = settings().tz
    end = _date("to") or datetime.now(tz).date()
    start = _date("from") or end - timedelta(days=DEFAULT_DAYS - 1)
    try:
        return citistat.make_period(start, end, tz, max_days=max_days)
    except ValidationFailed as exc:
        raise BadQuery(exc.field or "from", exc.message) from None


def _secure(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# -- formatting and charts ------------------------------------------------------------


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def hours(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1f} h"


@dataclass(frozen=True)
class Chart:
    caption: str  # shown above the chart, and its accessible name
    svg: Markup


# The charts are drawn at their own size in CSS pixels (never scaled to fill a column), so
# that their 13 px text is 13 px on a screen and on paper; only a phone narrower than a
# chart shrinks it. Two fit side by side inside the margins of a landscape Letter page.
CHART_W, LABEL_W, PLOT_W = 470, 172, 214
ROW_H, TOP, BOTTOM = 24, 30, 46


def _ticks(top: float, rate: bool) -> tuple[float, list[tuple[float, str]]]:
    """The axis' end and its ticks (value, label): quarters for a rate, round steps else."""
    if rate:
        return 1.0, [(q / 4, f"{q * 25}") for q in range(5)]
    if top <= 0:
        return 1.0, [(0, "0"), (1, "1")]
    step = _nice_step(top / 4)
    end = math.ceil(top / step - 1e-9) * step
    return end, [(i * step, f"{i * step:g}") for i in range(round(end / step) + 1)]


def _nice_step(x: float) -> float:
    power = 10 ** math.floor(math.log10(x))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= x - 1e-12)


def _short(label: str, limit: int = 23) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _frame(
    caption: str, category: str, axis: str, rows: int, end: float, ticks: list[tuple[float, str]]
) -> list[str]:
    """The chart's frame: the category axis' title above its labels, vertical grid lines
    at the ticks, the value axis with its numbers and title under the bars."""
    base = TOP + ROW_H * max(rows, 1)
    height = base + BOTTOM
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {CHART_W} {height}" width="{CHART_W}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(caption)}</title>',
        f'<text class="axis-title" x="{LABEL_W - 8}" y="18" text-anchor="end">{escape(category)}</text>',
    ]
    for value, label in ticks:
        x = LABEL_W + PLOT_W * value / end
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{TOP - 4}" x2="{x:.1f}" y2="{base}"/>')
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{base + 16}" text-anchor="middle">{escape(label)}</text>'
        )
    parts.append(
        f'<line class="axis" x1="{LABEL_W}" y1="{base}" x2="{LABEL_W + PLOT_W}" y2="{base}"/>'
    )
    parts.append(
        f'<text class="axis-title" x="{LABEL_W + PLOT_W / 2:.0f}" y="{base + 38}" '
        f'text-anchor="middle">{escape(axis)}</text>'
    )
    return parts


def _row_label(i: int, label: str) -> str:
    y = TOP + i * ROW_H
    full = escape(label)
    return (
        f'<text class="lbl" x="{LABEL_W - 8}" y="{y + 16}" text-anchor="end">'
        f"{escape(_short(label))}{f'<title>{full}</title>' if len(label) > 23 else ''}</text>"
    )


def hbar_chart(
    caption: str,
    category: str,
    axis: str,
    items: list[tuple[str, float | None]],
    fmt: Callable[[float | None], str],
    *,
    rate: bool = False,
) -> Chart:
    """A horizontal bar chart as inline SVG: one labelled bar per item on a value axis
    with ticks (0–100 for a rate), the value written at the end of the bar."""
    end, ticks = _ticks(max((v or 0 for _, v in items), default=0), rate)
    parts = _frame(caption, category, axis, len(items), end, ticks)
    for i, (label, value) in enumerate(items):
        y = TOP + i * ROW_H
        w = 0 if value is None else max(1, round(PLOT_W * value / end)) if value else 0
        parts.append(_row_label(i, label))
        parts.append(
            f'<rect x="{LABEL_W}" y="{y + 4}" width="{w}" height="{ROW_H - 8}" class="bar"/>'
        )
        parts.append(
            f'<text class="val" x="{LABEL_W + w + 4}" y="{y + 16}">{escape(fmt(value))}</text>'
        )
    parts.append("</svg>")
    return Chart(caption, Markup("".join(parts)))


def stacked_chart(caption: str, category: str, items: list[tuple[str, int, int]]) -> Chart:
    """Received per group as a light bar, the closed part of it filled darker, with a key."""
    end, ticks = _ticks(max((r for _, r, _ in items), default=0), False)
    parts = _frame(caption, category, "requests (closed / received)", len(items), end, ticks)
    # The key, right of the category title: which shade is which.
    parts.append(
        f'<rect x="{LABEL_W}" y="7" width="13" height="13" class="bar"/>'
        f'<text class="key" x="{LABEL_W + 18}" y="18">closed</text>'
        f'<rect x="{LABEL_W + 80}" y="7" width="13" height="13" class="bar light"/>'
        f'<text class="key" x="{LABEL_W + 98}" y="18">received</text>'
    )
    for i, (label, received, closed) in enumerate(items):
        y = TOP + i * ROW_H
        w = max(1, round(PLOT_W * received / end)) if received else 0
        wc = 0 if not received else round(w * closed / received)
        parts.append(_row_label(i, label))
        parts.append(
            f'<rect x="{LABEL_W}" y="{y + 4}" width="{w}" height="{ROW_H - 8}" class="bar light"/>'
        )
        parts.append(
            f'<rect x="{LABEL_W}" y="{y + 4}" width="{wc}" height="{ROW_H - 8}" class="bar"/>'
        )
        parts.append(
            f'<text class="val" x="{LABEL_W + w + 4}" y="{y + 16}">{closed} / {received}</text>'
        )
    parts.append("</svg>")
    return Chart(caption, Markup("".join(parts)))


def _section(title: str, anchor: str, column: str, report: citistat.Report) -> dict[str, Any]:
    rows = report.rows
    what = column.lower()
    return {
        "title": title,
        "anchor": anchor,
        "column": column,
        "rows": rows,
        "charts": [
            stacked_chart(
                f"Requests closed of received, by {what}",
                column,
                [(r.label, r.received, r.closed) for r in rows],
            ),
            hbar_chart(
                f"On-time rate, by {what}",
                column,
                "on time (% of closed and late open)",
                [(r.label, r.on_time_rate) for r in rows],
                pct,
                rate=True,
            ),
            hbar_chart(
                f"Median time to close, by {what}",
                column,
                "hours (Kaplan–Meier median)",
                [(r.label, r.median_hours_to_close) for r in rows],
                hours,
            ),
        ],
    }


def _shade() -> MapFigure:
    raw = (request.args.get("shade") or DEFAULT_FIGURE).strip()
    if raw not in FIGURES:
        raise BadQuery("shade", f"'shade' must be one of {', '.join(FIGURES)}, got {raw[:40]!r}")
    return FIGURES[raw]


# -- routes ---------------------------------------------------------------------------------


@blp.route("/citistat")
def citistat_page() -> Response:
    try:
        period = _period(MAX_PAGE_DAYS)
        shade = _shade()
    except BadQuery as exc:
        resp = make_response(render_template("citistat_error.html", message=exc.message), 422)
        return _secure(resp)
    s = report_session()  # the read replica's when there is one
    now = datetime.now(period.tz)
    by_district = citistat.compute(
        s, start=period.start, end=period.end, group_by="district", tz=period.tz, now=now
    )
    by_type = citistat.compute(
        s, start=period.start, end=period.end, group_by="service_type", tz=period.tz, now=now
    )
    total = by_type.total
    backlog_labels = {
        "lt_1d": "under 1 day",
        "1_3d": "1–3 days",
        "3_7d": "3–7 days",
        "7_30d": "7–30 days",
        "gt_30d": "30 days or more",
    }
    # The table's column heads sit under "Still open, by age": short, so the table fits 1280 px.
    backlog_heads = {
        "lt_1d": "< 1 day",
        "1_3d": "1–3 days",
        "3_7d": "3–7 days",
        "7_30d": "7–30 days",
        "gt_30d": "30+ days",
    }
    here = {"from": period.start.isoformat(), "to": period.end.isoformat()}
    html = render_template(
        "citistat.html",
        period=period,
        generated=now,
        total=total,
        sections=[
            _section("By district", "by-district", "District", by_district),
            _section("By service type", "by-service-type", "Service", by_type),
        ],
        district_map=district_map(s, by_district.rows, shade, pct),
        shade=shade,
        shade_links=[
            (f, "/citistat?" + urlencode({**here, "shade": f.key}) + "#map")
            for f in FIGURES.values()
        ],
        backlog_chart=hbar_chart(
            "Open requests by age",
            "Age",
            "open requests",
            [(backlog_labels[k], v) for k, v in total.backlog.items()],
            lambda v: str(int(v or 0)),
        ),
        backlog_heads=backlog_heads,
        outcomes=citistat.OTHER_OUTCOMES,
        pct=pct,
        hours=hours,
        verified_share=verified_share,
        export_url=f"/open-data/requests.csv?from={period.start}&to={period.end}",
    )
    resp = make_response(html)
    resp.headers["Cache-Control"] = "public, max-age=300"
    return _secure(resp)


@blp.route("/open-data/requests.csv")
def open_data_requests() -> Response:
    try:
        period = _period(None)
    except BadQuery as exc:
        from api.errors import error_response

        return error_response(422, exc.message, {exc.field: [exc.message]})
    s = report_session()  # the read replica's when there is one
    body = stream_with_context(citistat.open_data_csv(s, period))
    name = f"requests_{period.start}_{period.end}.csv"
    resp = Response(
        body, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp
