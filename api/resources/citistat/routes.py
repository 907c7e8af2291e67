"""/api/v1/citistat: the accountability numbers for a period, per group and in total,
as JSON or CSV. The definitions of every figure are in `core.citistat`."""

from __future__ import annotations

from dataclasses import fields as dc_fields
from datetime import date, datetime, timedelta
from typing import Any, get_type_hints

from flask import Response, request
from marshmallow import Schema, fields, validate

from api import inputs
from api.auth import require
from api.db import report_session, settings
from api.errors import abort
from api.resources.common import Blueprint
from reports import citistat

blp = Blueprint(
    "citistat",
    __name__,
    url_prefix="/citistat",
    description="CitiStat: requests, on-time rate, time to close (Kaplan–Meier), backlog, proof, crew work.",
)

DEFAULT_DAYS = 30


class CitiStatArgs(Schema):
    from_ = inputs.Date(
        data_key="from",
        metadata={
            "description": f"first day (city time zone); default: {DEFAULT_DAYS} days before `to`"
        },
    )
    to = inputs.Date(
        metadata={"description": "last day, inclusive (city time zone); default: today"}
    )
    group_by = fields.String(
        load_default="service_type", validate=validate.OneOf(citistat.GROUP_BYS)
    )
    format = fields.String(
        load_default=None,
        validate=validate.OneOf(("json", "csv")),
        metadata={"description": "json (default) or csv; `Accept: text/csv` also gives CSV"},
    )


def _figure_field(name: str, hint: Any) -> fields.Field:
    if name in {"closed_other", "backlog"}:
        return fields.Dict(keys=fields.String(), values=fields.Integer())
    if name in {"group"}:
        return fields.String(allow_none=True)
    if name == "label":
        return fields.String()
    if hint is int:
        return fields.Integer()
    return fields.Float(allow_none=True)


_hints = get_type_hints(citistat.Figures)
FiguresSchema = Schema.from_dict(
    {f.name: _figure_field(f.name, _hints[f.name]) for f in dc_fields(citistat.Figures)},
    name="CitiStatFiguresSchema",
)


class CitiStatSchema(Schema):
    from_ = fields.String(data_key="from")
    to = fields.String()
    timezone = fields.String()
    group_by = fields.String()
    generated_at = fields.String()
    rows = fields.List(fields.Nested(FiguresSchema))
    total = fields.Nested(FiguresSchema)


def period_args(args: dict[str, Any]) -> tuple[date, date]:
    """The period a caller asked for, with the defaults (last 30 days to today, city time)."""
    end = args.get("to") or datetime.now(settings().tz).date()
    start = args.get("from_") or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        abort(
            422,
            message=f"'from' ({start}) is after 'to' ({end})",
            errors={"from": ["must not be after 'to'"]},
        )
    return start, end


def wants_csv(fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    return request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"


@blp.route("")
@require("dispatcher", "supervisor")
@blp.arguments(CitiStatArgs, location="query")
@blp.response(200, CitiStatSchema)
@blp.doc(operationId="getCitiStat")
def get_citistat(args: dict[str, Any]) -> Any:
    """The figures per group and a total row. With `format=csv` (or `Accept: text/csv`)
    the same rows come as CSV, one column per figure (closed_<outcome>, backlog_<bucket>
    spread out), the total last."""
    start, end = period_args(args)
    # A report may trail the writes by up to STREETLOOP_REPLICA_MAX_LAG_S: the read replica's when there is one.
    report = citistat.compute(
        report_session(), start=start, end=end, group_by=args["group_by"], tz=settings().tz
    )
    if wants_csv(args.get("format")):
        name = f"citistat_{report.group_by}_{report.start}_{report.end}.csv"
        return Response(
            report.to_csv(),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    body = report.as_dict()
    return {**body, "from_": body.pop("from")}
