"""Public CitiStat: the report page at /citistat and the open-data CSV of requests.

No login: the page shows aggregates only (per district and per service type, no crew,
no person), the export only the columns cities publish (never contact details or the
token). Charts are inline SVG drawn here, on the server: no script, nothing fetched
from another site, and the page prints as it looks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, make_response, render_template, request, stream_with_context
from markupsafe import Markup, escape

from api.db import session, settings
from api.inputs import year_problem
from core import citistat
from core.errors import ValidationFailed

blp = Blueprint("citistat_page", __name__)

DEFAULT_DAYS = 30
# The page is public and computes on request: one year at most per view.
MAX_PAGE_DAYS = 366
CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"


class BadPeriod(ValueError):
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
        raise BadPeriod(name, f"'{name}' must be a date like 2026-03-31, got {raw[:40]!r}") from None
    problem = year_problem(value)
    if problem:
        raise BadPeriod(name, f"'{name}': {problem}")
    return value


def _period(max_days: int | None) -> citistat.Period:
    tz = settings().tz
    end = _date("to") or datetime.now(tz).date()
    start = _date("from") or end - timedelta(days=DEFAULT_DAYS - 1)
    try:
        return citistat.make_period(start, end, tz, max_days=max_days)
    except ValidationFailed as exc:
        raise BadPeriod(exc.field or "from", exc.message) from None


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


def hbar_chart(title: str, items: list[tuple[str, float | None]], fmt: Callable[[float | None], str],
               max_value: float | None = None) -> Markup:
    """A horizontal bar chart as inline SVG: one labelled bar per item, scaled to the
    largest value (or `max_value`), the value written at the end of the bar."""
    row_h, label_w, bar_w, pad = 22, 170, 260, 70
    width = label_w + bar_w + pad
    height = row_h * max(len(items), 1) + 8
    top = max_value if max_value is not None else max((v or 0 for _, v in items), default=0)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, value) in enumerate(items):
        y = 4 + i * row_h
        w = 0 if not top or value is None else max(1, round(bar_w * value / top))
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" class="lbl">{escape(label[:28])}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 8}" class="bar"/>')
        parts.append(f'<text x="{label_w + w + 4}" y="{y + 15}" class="val">{escape(fmt(value))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def stacked_chart(title: str, items: list[tuple[str, int, int]]) -> Markup:
    """Received per group as a bar, the closed part of it filled darker."""
    row_h, label_w, bar_w, pad = 22, 170, 260, 90
    width = label_w + bar_w + pad
    height = row_h * max(len(items), 1) + 8
    top = max((r for _, r, _ in items), default=0)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, received, closed) in enumerate(items):
        y = 4 + i * row_h
        w = 0 if not top else max(1, round(bar_w * received / top)) if received else 0
        wc = 0 if not received else round(w * closed / received)
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" class="lbl">{escape(label[:28])}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 8}" class="bar light"/>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{wc}" height="{row_h - 8}" class="bar"/>')
        parts.append(f'<text x="{label_w + w + 4}" y="{y + 15}" class="val">{closed} / {received}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _section(title: str, column: str, report: citistat.Report) -> dict[str, Any]:
    rows = report.rows
    return {
        "title": title,
        "column": column,
        "rows": rows,
        "charts": [
            stacked_chart(f"{title}: closed of received", [(r.label, r.received, r.closed) for r in rows]),
            hbar_chart(f"{title}: on-time rate", [(r.label, r.on_time_rate) for r in rows], pct, max_value=1.0),
            hbar_chart(f"{title}: median time to close", [(r.label, r.median_hours_to_close) for r in rows], hours),
        ],
    }


# -- routes ---------------------------------------------------------------------------------


@blp.route("/citistat")
def citistat_page() -> Response:
    try:
        period = _period(MAX_PAGE_DAYS)
    except BadPeriod as exc:
        resp = make_response(render_template("citistat_error.html", message=exc.message), 422)
        return _secure(resp)
    s = session()
    now = datetime.now(period.tz)
    by_district = citistat.compute(s, start=period.start, end=period.end, group_by="district", tz=period.tz, now=now)
    by_type = citistat.compute(s, start=period.start, end=period.end, group_by="service_type", tz=period.tz, now=now)
    total = by_type.total
    backlog_labels = {"lt_1d": "under 1 day", "1_3d": "1–3 days", "3_7d": "3–7 days", "7_30d": "7–30 days", "gt_30d": "30 days or more"}
    html = render_template(
        "citistat.html",
        period=period,
        generated=now,
        total=total,
        sections=[_section("By district", "District", by_district), _section("By service type", "Service", by_type)],
        backlog_chart=hbar_chart("Open requests by age", [(backlog_labels[k], v) for k, v in total.backlog.items()],
                                 lambda v: str(int(v or 0))),
        backlog_labels=backlog_labels,
        outcomes=citistat.OTHER_OUTCOMES,
        pct=pct,
        hours=hours,
        export_url=f"/open-data/requests.csv?from={period.start}&to={period.end}",
    )
    resp = make_response(html)
    resp.headers["Cache-Control"] = "public, max-age=300"
    return _secure(resp)


@blp.route("/open-data/requests.csv")
def open_data_requests() -> Response:
    try:
        period = _period(None)
    except BadPeriod as exc:
        from api.errors import error_response

        return error_response(422, exc.message, {exc.field: [exc.message]})
    s = session()
    body = stream_with_context(citistat.open_data_csv(s, period))
    name = f"requests_{period.start}_{period.end}.csv"
    resp = Response(body, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'})
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp
