"""Crews' shifts and weekly shift patterns: what plans are built from."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, time, timedelta
from typing import Any

from flask import g
from marshmallow import Schema, fields, validate
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from api import inputs
from api.auth import current_actor, require
from api.db import session, settings
from api.errors import abort
from api.resources.common import Blueprint, EventSchema, timeline
from core import shifts as rota
from core.models import Crew, Depot, Shift, ShiftPattern

blp = Blueprint(
    "shifts",
    __name__,
    url_prefix="",
    description="Crews' shifts and weekly shift patterns; plans are built from them.",
)

_CODE = validate.Length(1, 64)


class BreakWindowSchema(Schema):
    earliest_start = inputs.AwareDateTime(required=True)
    latest_end = inputs.AwareDateTime(required=True)
    minutes = fields.Integer(required=True, validate=validate.Range(1, 8 * 60))


class ShiftSchema(Schema):
    id = fields.Integer()
    crew = fields.String()
    starts_at = fields.DateTime()
    ends_at = fields.DateTime()
    breaks = fields.List(fields.Nested(BreakWindowSchema))
    start_depot = fields.String(allow_none=True)
    end_depot = fields.String(allow_none=True)
    pattern_id = fields.Integer(
        allow_none=True,
        metadata={"description": "the weekly pattern that made it; null once edited by hand"},
    )
    state = fields.String(validate=validate.OneOf(["scheduled", "ended_early", "cancelled"]))
    ended_early_at = fields.DateTime(allow_none=True)
    end_reason = fields.String(allow_none=True)
    cancelled_at = fields.DateTime(allow_none=True)


class ShiftDetailSchema(ShiftSchema):
    timeline = fields.List(fields.Nested(EventSchema))


class NewShiftSchema(Schema):
    crew = fields.String(required=True, validate=_CODE, metadata={"description": "crew code"})
    starts_at = inputs.AwareDateTime(required=True)
    ends_at = inputs.AwareDateTime(required=True)
    breaks = fields.List(fields.Nested(BreakWindowSchema), load_default=list)
    start_depot = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "depot code; default the crew's"},
    )
    end_depot = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "depot code; default the crew's"},
    )


class ShiftChangeSchema(Schema):
    starts_at = inputs.AwareDateTime()
    ends_at = inputs.AwareDateTime()
    breaks = fields.List(fields.Nested(BreakWindowSchema))


class EndShiftSchema(Schema):
    at = inputs.AwareDateTime(
        load_default=None, metadata={"description": "the new end; default now"}
    )
    reason = fields.String(
        required=True,
        validate=validate.Length(1, 500),
        metadata={"description": "e.g. 'went home sick'"},
    )


class CancelShiftSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(1, 500))


class ShiftListArgs(Schema):
    crew = fields.String(load_default=None, metadata={"description": "crew code"})
    from_ = inputs.Date(
        data_key="from",
        load_default=None,
        metadata={"description": "first day (local); default today"},
    )
    to = inputs.Date(
        load_default=None,
        metadata={"description": "last day (local), inclusive; default a week on"},
    )
    include_cancelled = fields.Boolean(load_default=False)


class BreakRuleSchema(Schema):
    earliest = fields.Time(required=True, format="%H:%M", metadata={"example": "11:30"})
    latest = fields.Time(required=True, format="%H:%M", metadata={"example": "13:30"})
    minutes = fields.Integer(required=True, validate=validate.Range(1, 8 * 60))


class PatternSchema(Schema):
    id = fields.Integer(dump_only=True)
    crew = fields.String(required=True, validate=_CODE, metadata={"description": "crew code"})
    weekdays = fields.List(
        fields.String(validate=validate.OneOf(rota.WEEKDAYS)),
        required=True,
        validate=validate.Length(min=1, max=7),
        metadata={"example": ["mon", "tue", "wed", "thu", "fri"]},
    )
    starts = fields.Time(
        required=True, format="%H:%M", metadata={"description": "local time", "example": "07:00"}
    )
    ends = fields.Time(
        required=True,
        format="%H:%M",
        metadata={
            "description": "local time; at or before `starts` means the next day",
            "example": "15:30",
        },
    )
    breaks = fields.List(fields.Nested(BreakRuleSchema), load_default=list)
    valid_from = inputs.Date(load_default=None, metadata={"description": "default today"})
    valid_until = inputs.Date(
        load_default=None,
        allow_none=True,
        metadata={"description": "last day; empty means open-ended"},
    )
    start_depot = fields.String(load_default=None, allow_none=True)
    end_depot = fields.String(load_default=None, allow_none=True)


class PatternOutSchema(PatternSchema):
    shifts_made = fields.Integer(
        dump_only=True, metadata={"description": "shifts this call made for the coming days"}
    )
    timeline = fields.List(fields.Nested(EventSchema), dump_only=True)


class PatternChangeSchema(PatternSchema):
    crew = fields.String(dump_only=True)


class EndPatternSchema(Schema):
    last_day = inputs.Date(
        load_default=None, metadata={"description": "the pattern's last day; default today"}
    )


class PatternListArgs(Schema):
    crew = fields.String(load_default=None)


def _depot_code(depot_id: int | None) -> str | None:
    """A depot's code; the yards are few, so one query per request reads them all."""
    if depot_id is None:
        return None
    if "depot_codes" not in g:
        g.depot_codes = {
            row.id: row.code for row in session().execute(select(Depot.id, Depot.code))
        }
    return g.depot_codes.get(depot_id)


def _shift_out(sh: Shift) -> dict[str, Any]:
    return {
        "id": sh.id,
        "crew": sh.crew.code,
        "starts_at": sh.starts_at,
        "ends_at": sh.ends_at,
        "breaks": [
            {"earliest_start": b.earliest_start, "latest_end": b.latest_end, "minutes": b.minutes}
            for b in sh.breaks
        ],
        "start_depot": _depot_code(sh.start_depot_id),
        "end_depot": _depot_code(sh.end_depot_id),
        "pattern_id": sh.pattern_id,
        "state": rota.state_of(sh),
        "ended_early_at": sh.ended_early_at,
        "end_reason": sh.end_reason,
        "cancelled_at": sh.cancelled_at,
    }


def _pattern_out(p: ShiftPattern, made: int | None = None) -> dict[str, Any]:
    return {
        "id": p.id,
        "crew": p.crew.code,
        "weekdays": [rota.WEEKDAYS[d - 1] for d in sorted(p.weekdays)],
        "starts": p.starts_local,
        "ends": p.ends_local,
        "breaks": [asdict(rota.BreakRule.from_json(b)) for b in p.breaks],
        "valid_from": p.valid_from,
        "valid_until": p.valid_until,
        "start_depot": _depot_code(p.start_depot_id),
        "end_depot": _depot_code(p.end_depot_id),
        "shifts_made": made,
        "timeline": timeline(session(), "shift_pattern", p.id),
    }


def _crew(code: str) -> Crew:
    crew = session().scalar(select(Crew).where(Crew.code == code))
    if crew is None:
        abort(422, message=f"crew {code!r} not found", errors={"crew": ["unknown crew"]})
    return crew


def _shift(shift_id: int) -> Shift:
    """Unlocked: the domain takes the crew's lock before the shift's row."""
    q = (
        select(Shift)
        .where(Shift.id == shift_id)
        .options(selectinload(Shift.breaks), selectinload(Shift.crew))
    )
    shift = session().scalar(q)
    if shift is None:
        abort(404, message=f"shift {shift_id} not found")
    return shift


def _pattern(pattern_id: int) -> ShiftPattern:
    pattern = session().scalar(select(ShiftPattern).where(ShiftPattern.id == pattern_id))
    if pattern is None:
        abort(404, message=f"shift pattern {pattern_id} not found")
    return pattern


def _windows(raw: list[dict[str, Any]]) -> list[rota.BreakWindow]:
    return [rota.BreakWindow(b["earliest_start"], b["latest_end"], b["minutes"]) for b in raw]


def _detail(shift_id: int) -> dict[str, Any]:
    session().expire_all()
    out = _shift_out(_shift(shift_id))
    out["timeline"] = timeline(session(), "shift", shift_id)
    return out


@blp.route("/shifts")
@require("dispatcher", "supervisor")
@blp.arguments(ShiftListArgs, location="query")
@blp.response(200, ShiftSchema(many=True))
@blp.doc(operationId="listShifts")
def list_shifts(args: dict[str, Any]) -> Any:
    tz = settings().tz
    first = args["from_"] or datetime.now(tz).date()
    last = args["to"] or first + timedelta(days=7)
    if last < first:
        abort(422, message="'to' is before 'from'", errors={"to": ["before from"]})
    if (last - first).days > 92:
        abort(
            422, message="ask for at most 93 days at a time", errors={"to": ["too far from 'from'"]}
        )
    lo, hi = (
        datetime.combine(first, time(0), tz),
        datetime.combine(last + timedelta(days=1), time(0), tz),
    )
    q = (
        select(Shift)
        .where(Shift.starts_at >= lo, Shift.starts_at < hi)
        .options(selectinload(Shift.breaks), selectinload(Shift.crew))
        .order_by(Shift.starts_at, Shift.id)
    )
    if args["crew"]:
        q = q.where(Shift.crew_id == _crew(args["crew"]).id)
    if not args["include_cancelled"]:
        q = q.where(Shift.cancelled_at.is_(None))
    return [_shift_out(sh) for sh in session().scalars(q)]


@blp.route("/shifts", methods=["POST"])
@require("dispatcher")
@blp.arguments(NewShiftSchema)
@blp.response(201, ShiftDetailSchema)
@blp.error(409, "It overlaps another of the crew's shifts")
@blp.error(422, "Bad times, breaks, crew or depot")
@blp.doc(operationId="createShift")
def create_shift(data: dict[str, Any]) -> Any:
    s = session()
    shift = rota.create_shift(
        s,
        crew=_crew(data["crew"]),
        starts_at=data["starts_at"],
        ends_at=data["ends_at"],
        breaks=_windows(data["breaks"]),
        start_depot=data["start_depot"],
        end_depot=data["end_depot"],
        actor=current_actor(),
        tz=settings().tz,
    )
    s.commit()
    return _detail(shift.id)


@blp.route("/shifts/<int:shift_id>")
@require("dispatcher", "supervisor")
@blp.response(200, ShiftDetailSchema)
@blp.error(404)
@blp.doc(operationId="getShift")
def get_shift(shift_id: int) -> Any:
    return _detail(shift_id)


@blp.route("/shifts/<int:shift_id>", methods=["PATCH"])
@require("dispatcher")
@blp.arguments(ShiftChangeSchema)
@blp.response(200, ShiftDetailSchema)
@blp.error(409, "Cancelled, or it would overlap another shift")
@blp.error(404)
@blp.doc(operationId="updateShift")
def change_shift(data: dict[str, Any], shift_id: int) -> Any:
    s = session()
    rota.update_shift(
        s,
        _shift(shift_id),
        starts_at=data.get("starts_at"),
        ends_at=data.get("ends_at"),
        breaks=_windows(data["breaks"]) if "breaks" in data else None,
        actor=current_actor(),
        tz=settings().tz,
    )
    s.commit()
    return _detail(shift_id)


@blp.route("/shifts/<int:shift_id>/end", methods=["POST"])
@require("dispatcher")
@blp.arguments(EndShiftSchema)
@blp.response(200, ShiftDetailSchema)
@blp.error(409, "The shift was cancelled")
@blp.error(404)
@blp.doc(operationId="endShift")
def end_shift(data: dict[str, Any], shift_id: int) -> Any:
    """End a shift early (a crew goes home sick). Its work is planned without it from then:
    re-plan the day to give it to other crews."""
    s = session()
    rota.end_shift(
        s,
        _shift(shift_id),
        at=data["at"],
        reason=data["reason"],
        actor=current_actor(),
        tz=settings().tz,
    )
    s.commit()
    return _detail(shift_id)


@blp.route("/shifts/<int:shift_id>/cancel", methods=["POST"])
@require("dispatcher")
@blp.arguments(CancelShiftSchema)
@blp.response(200, ShiftDetailSchema)
@blp.error(409, "The shift has started: end it early instead")
@blp.error(404)
@blp.doc(operationId="cancelShift")
def cancel_shift(data: dict[str, Any], shift_id: int) -> Any:
    s = session()
    rota.cancel_shift(
        s, _shift(shift_id), reason=data["reason"], actor=current_actor(), tz=settings().tz
    )
    s.commit()
    return _detail(shift_id)


def _spec(data: dict[str, Any]) -> rota.PatternSpec:
    return rota.PatternSpec(
        weekdays=tuple(rota.WEEKDAYS.index(d) + 1 for d in data["weekdays"]),
        starts=data["starts"],
        ends=data["ends"],
        breaks=tuple(
            rota.BreakRule(b["earliest"], b["latest"], b["minutes"]) for b in data["breaks"]
        ),
        valid_from=data.get("valid_from"),
        valid_until=data.get("valid_until"),
        start_depot=data.get("start_depot"),
        end_depot=data.get("end_depot"),
    )


@blp.route("/shift-patterns")
@require("dispatcher", "supervisor")
@blp.arguments(PatternListArgs, location="query")
@blp.response(200, PatternOutSchema(many=True))
@blp.doc(operationId="listShiftPatterns")
def list_patterns(args: dict[str, Any]) -> Any:
    q = (
        select(ShiftPattern)
        .options(selectinload(ShiftPattern.crew))
        .order_by(ShiftPattern.crew_id, ShiftPattern.id)
    )
    if args["crew"]:
        q = q.where(ShiftPattern.crew_id == _crew(args["crew"]).id)
    return [_pattern_out(p) for p in session().scalars(q)]


@blp.route("/shift-patterns", methods=["POST"])
@require("dispatcher")
@blp.arguments(PatternSchema)
@blp.response(201, PatternOutSchema)
@blp.error(422, "Bad days, times, breaks, crew or depot")
@blp.doc(operationId="createShiftPattern")
def create_pattern(data: dict[str, Any]) -> Any:
    """A weekly pattern, e.g. Monday-Friday 07:00-15:30 with 30 minutes of lunch within
    11:30-13:30. It makes the crew's shifts for the coming days at once, and every night."""
    s, cfg = session(), settings()
    pattern, made = rota.create_pattern(
        s,
        crew=_crew(data["crew"]),
        spec=_spec(data),
        actor=current_actor(),
        tz=cfg.tz,
        horizon_days=cfg.shift_horizon_days,
    )
    s.commit()
    return _pattern_out(pattern, made)


@blp.route("/shift-patterns/<int:pattern_id>", methods=["PUT"])
@require("dispatcher")
@blp.arguments(PatternChangeSchema)
@blp.response(200, PatternOutSchema)
@blp.error(404)
@blp.doc(operationId="replaceShiftPattern")
def change_pattern(data: dict[str, Any], pattern_id: int) -> Any:
    """Replace a pattern's rules; the coming shifts it made are made again from them
    (shifts edited by hand, ended early or cancelled stay as they are)."""
    s, cfg = session(), settings()
    pattern, made = rota.update_pattern(
        s,
        _pattern(pattern_id),
        spec=_spec(data),
        actor=current_actor(),
        tz=cfg.tz,
        horizon_days=cfg.shift_horizon_days,
    )
    s.commit()
    return _pattern_out(pattern, made)


@blp.route("/shift-patterns/<int:pattern_id>/end", methods=["POST"])
@require("dispatcher")
@blp.arguments(EndPatternSchema)
@blp.response(200, PatternOutSchema)
@blp.error(404)
@blp.doc(operationId="endShiftPattern")
def end_pattern(data: dict[str, Any], pattern_id: int) -> Any:
    s, tz = session(), settings().tz
    pattern = _pattern(pattern_id)
    rota.end_pattern(
        s,
        pattern,
        last_day=data["last_day"] or datetime.now(tz).date(),
        actor=current_actor(),
        tz=tz,
    )
    s.commit()
    return _pattern_out(pattern)
