"""CitiStat: the city's accountability numbers for a period, per group and in total.

Everything is computed from the live tables (no cached aggregates, so there is nothing
that can drift from the data). The request cohort is read once, each request packed
by the database into 26 bytes and all of them concatenated into one value that numpy
reads in place; every cohort figure is then a vectorised count and the Kaplan–Meier
curve one sort (a year of a large city is a million requests; no Python object is made
per request). The other families of figures are one set-based SQL statement each
(a parallel GROUP BY; totals are sums of the groups).

The period is a range of dates in the city's time zone: `start` 00:00 to `end + 1 day`
00:00 (so `end` is inclusive). "now" is the instant the report is computed for.

Definitions (every figure, one place; "the cohort" = requests with `requested_at` in
the period, duplicates included: they are real reports that get closed like any other)

received
    requests in the cohort
duplicates
    cohort requests with `duplicate_of_id` set
open / closed
    cohort requests whose `detailed_status` is now open / closed (`REQUEST_CLOSED_STATUSES`)
closed_fixed_verified
    cohort requests now `fixed` whose completion (`completion_id`) has verdict `auto_verified`
    or `verified`; a `fixed` request without such proof is in `closed` only
closed_other[outcome]
    cohort requests now closed with that outcome: duplicate, not_found, no_action_needed,
    referred, cancelled
due
    `requested_at + service_types.sla_hours`
on_time
    closed requests with `closed_at <= due`
late_open
    open requests with `due <= now` (late work still waiting: never hidden)
open_not_yet_due
    open requests with `due > now`: undetermined, outside the on-time rate
on_time_denominator
    closed + late_open
on_time_rate
    on_time / on_time_denominator (null when 0)
median / p90_hours_to_close
    Kaplan–Meier estimate of the time from `requested_at` to `closed_at` (see `_km_quantiles`):
    closed requests are events at `closed_at - requested_at`, open ones are right-censored at
    `now - requested_at`. S(t) = Π over event times t_i <= t of (1 - d_i / n_i), d_i = closings
    at t_i, n_i = requests still open just before t_i (censored at t_i count as at risk). The
    q-quantile is the smallest event time t with S(t) <= 1 - q (a 1e-9 tolerance absorbs the
    floating-point product); null ("not reached") if the curve never gets that low. Durations
    are whole seconds (truncated), reported in hours. Unlike the median of closed requests only,
    slow work that is still open pulls it up
backlog[bucket]
    open cohort requests by age `now - requested_at`: lt_1d [0, 1 d), 1_3d [1, 3 d),
    3_7d [3, 7 d), 7_30d [7, 30 d), gt_30d [30 d, ∞)
reopened
    cohort requests with `reopen_count > 0`
ever_closed
    cohort requests closed now or with `reopen_count > 0`
reopen_rate
    reopened / ever_closed (null when 0)
completions
    completions with `submitted_at` in the period; grouped by their work order's service type /
    agency / district, by `completions.crew_id`, or by the week of `submitted_at`
completions_auto_verified / _verified_by_supervisor / _rejected / _awaiting_review
    those completions by verdict: auto_verified / verified (a supervisor accepted the visit,
    whether the work closed with the crew's outcome or another one) / rejected / needs_review
completions_audit_sampled
    those completions with `audit_sampled`
share_auto_verified / share_reviewed / share_rejected
    the three counts above / completions (null when 0); reviewed = accepted by a supervisor
jobs_completed
    completions in the period with verdict auto_verified or verified: visits whose proof stands,
    whatever their outcome (a pothole fixed, or nothing found at the place)
shift_hours
    Σ (ends_at - starts_at) of shifts starting in the period (breaks included; cancelled shifts
    left out, shifts ended early counted to their new end); by crew or by week of `starts_at`;
    null for the other groupings (a shift has no service type or district)
jobs_per_shift_hour
    jobs_completed / shift_hours (null when either is null or 0)
drive_hours
    Σ `plan_routes.drive_s` of the plan in force for each day of the period: per (plan_date,
    scope_key) the highest version that was published (`published_at` set, status published or
    superseded); by crew or by week of plan_date; null for other groupings
on_site_hours
    Σ (`completed_at` - `arrived_at`) of the completions above (the visit behind each: when the
    crew was on site and when it finished, recorded with the completion), grouped like them
gps_km
    only for group_by=crew (null otherwise, also in the total): Σ great-circle distance between
    consecutive `position_pings` of the crew inside the period. Raw fixes, so GPS jitter while
    standing still adds a little. For days whose fixes the retention purge deleted, the same
    legs as summed per crew and day before it did (`crew_track_days`)
planned_stops
    job stops in the plans in force (as for drive_hours) for the days of the period; grouped by
    the stop's crew, its work order (type, agency, district) or the week of plan_date
planned_done
    those stops whose work order has a `completed` status event on the plan's day (city time
    zone)
planned_done_rate
    planned_done / planned_stops (null when 0)

Rates are rounded to 4 decimals, hours to 4 decimals, kilometres to 3.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import DateTime, Text, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from core.errors import ValidationFailed
from core.status import (
    PLAN_PUBLISHED_OR_SUPERSEDED,
    PROVEN,
    REQUEST_CLOSED_STATUSES,
    REQUEST_OTHER_OUTCOMES,
    REQUEST_STATUSES,
    UNPROVEN,
    Verdict,
    sql_list,
)
from core.timefmt import iso
from reports.csvexport import CsvTable

GROUP_BYS = ("agency", "service_type", "district", "crew", "week")
OTHER_OUTCOMES = REQUEST_OTHER_OUTCOMES
# (name, lower bound in days, upper bound in days or None)
BACKLOG_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("lt_1d", 0, 1),
    ("1_3d", 1, 3),
    ("3_7d", 3, 7),
    ("7_30d", 7, 30),
    ("gt_30d", 30, None),
)
# Absorbs the rounding of exp(Σ ln(1 - d/n)) so S(t) = 0.5 exactly is seen as reached.
KM_TOLERANCE = 1e-9

# The status lists of the statements below, spelled once from `core.status`.
_CLOSED_SQL = sql_list(REQUEST_CLOSED_STATUSES)
_PROVEN_SQL = sql_list(PROVEN)
# As the partial index ix_completions_unproven is spelled, so that the join uses it.
_UNPROVEN_SQL = sql_list(UNPROVEN)
_PUBLISHED_SQL = sql_list(PLAN_PUBLISHED_OR_SUPERSEDED)


def _week(ts: str) -> str:
    return f"to_char(date_trunc('week', {ts} AT TIME ZONE :tz), 'YYYY-MM-DD')"


# The group key of each source of figures, per group_by; None: not defined for that grouping.
_COMPLETION_KEYS = {
    "agency": "st.agency",
    "service_type": "st.code",
    "district": "d.code",
    "crew": "cr.code",
    # A binary search among the weeks' first instants (labelled afterwards): no time zone
    # arithmetic per completion.
    "week": "width_bucket(c.submitted_at, :week_starts)",
}
_SHIFT_KEYS: dict[str, str | None] = {
    "agency": None,
    "service_type": None,
    "district": None,
    "crew": "cr.code",
    "week": _week("sh.starts_at"),
}
_DRIVE_KEYS: dict[str, str | None] = {
    "agency": None,
    "service_type": None,
    "district": None,
    "crew": "cr.code",
    "week": "p.week",
}
_STOP_KEYS = {
    "agency": "st.agency",
    "service_type": "st.code",
    "district": "d.code",
    "crew": "cr.code",
    "week": "p.week",  # once per plan, not per stop
}


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # inclusive
    tz: ZoneInfo

    @property
    def starts_at(self) -> datetime:
        return datetime.combine(self.start, time(0), tzinfo=self.tz)

    @property
    def ends_at(self) -> datetime:
        """Exclusive: midnight after `end` in the city's time zone (DST-safe)."""
        return datetime.combine(self.end + timedelta(days=1), time(0), tzinfo=self.tz)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def make_period(start: date, end: date, tz: ZoneInfo, *, max_days: int | None = None) -> Period:
    if start > end:
        raise ValidationFailed(f"'from' ({start}) is after 'to' ({end})", field="from")
    p = Period(start, end, tz)
    if max_days is not None and p.days > max_days:
        raise ValidationFailed(f"the period is {p.days} days; at most {max_days} here", field="to")
    return p


@dataclass
class Figures:
    """One row of the report; see the module docstring for each definition."""

    group: str | None = None
    label: str = ""
    received: int = 0
    duplicates: int = 0
    open: int = 0
    closed: int = 0
    closed_fixed_verified: int = 0
    closed_other: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OTHER_OUTCOMES, 0))
    on_time: int = 0
    late_open: int = 0
    open_not_yet_due: int = 0
    on_time_denominator: int = 0
    on_time_rate: float | None = None
    median_hours_to_close: float | None = None
    p90_hours_to_close: float | None = None
    backlog: dict[str, int] = field(default_factory=lambda: {b[0]: 0 for b in BACKLOG_BUCKETS})
    reopened: int = 0
    ever_closed: int = 0
    reopen_rate: float | None = None
    completions: int = 0
    completions_auto_verified: int = 0
    completions_verified_by_supervisor: int = 0
    completions_rejected: int = 0
    completions_awaiting_review: int = 0
    completions_audit_sampled: int = 0
    share_auto_verified: float | None = None
    share_reviewed: float | None = None
    share_rejected: float | None = None
    jobs_completed: int = 0
    shift_hours: float | None = None
    jobs_per_shift_hour: float | None = None
    drive_hours: float | None = None
    on_site_hours: float = 0.0
    gps_km: float | None = None
    planned_stops: int = 0
    planned_done: int = 0
    planned_done_rate: float | None = None

    def flat(self) -> dict[str, Any]:
        """One level of keys (closed_other and backlog spread out), for CSV."""
        out: dict[str, Any] = {}
        for k, v in asdict(self).items():
            if k == "closed_other":
                out.update({f"closed_{o}": n for o, n in v.items()})
            elif k == "backlog":
                out.update({f"backlog_{b}": n for b, n in v.items()})
            else:
                out[k] = v
        return out


FLAT_COLUMNS = list(Figures().flat())
# The CSV's text columns (keys and names staff typed in); every other column is a figure.
FLAT_TEXT_COLUMNS = ("group", "label")


@dataclass
class Report:
    start: date
    end: date
    timezone: str
    group_by: str
    generated_at: datetime
    rows: list[Figures]
    total: Figures

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "timezone": self.timezone,
            "group_by": self.group_by,
            "generated_at": self.generated_at.isoformat(),
            "rows": [asdict(r) for r in self.rows],
            "total": asdict(self.total),
        }

    def to_csv(self) -> str:
        table = CsvTable(
            FLAT_COLUMNS, numeric=[c for c in FLAT_COLUMNS if c not in FLAT_TEXT_COLUMNS]
        )
        rows = [
            [flat[c] for c in FLAT_COLUMNS] for flat in (r.flat() for r in [*self.rows, self.total])
        ]
        return table.header() + table.rows(rows)


def _rate(num: int | float | None, den: int | float | None) -> float | None:
    if num is None or not den:
        return None
    return round(num / den, 4)


def _hours(seconds: int | float | None, digits: int = 4) -> float | None:
    return None if seconds is None else round(float(seconds) / 3600, digits)


# The stops' work orders, read only when the grouping needs their type or district.
_STOP_WORK_ORDER_JOIN = """
        JOIN work_orders wo ON wo.id = rs.work_order_id
        JOIN service_types st ON st.id = wo.service_type_id
        LEFT JOIN districts d ON d.id = wo.district_id
"""


def _stop_sql(group_by: str) -> str:
    needs_order = group_by in ("agency", "service_type", "district")
    return _STOP_SQL.format(
        key=_STOP_KEYS[group_by], work_order_join=_STOP_WORK_ORDER_JOIN if needs_order else ""
    )


# -- the statements -------------------------------------------------------------------

_COMPLETION_SQL = f"""
    SELECT grp,
           count(*) AS completions,
           count(*) FILTER (WHERE verdict = '{Verdict.AUTO_VERIFIED}') AS auto_verified,
           count(*) FILTER (WHERE verdict = '{Verdict.VERIFIED}') AS verified,
           count(*) FILTER (WHERE verdict = '{Verdict.REJECTED}') AS rejected,
           count(*) FILTER (WHERE verdict = '{Verdict.NEEDS_REVIEW}') AS awaiting,
           count(*) FILTER (WHERE audit_sampled) AS audit_sampled,
           sum(date_part('epoch', completed_at - arrived_at)) AS on_site_s
    FROM (
        SELECT {{key}} AS grp, c.verdict, c.audit_sampled, c.arrived_at, c.completed_at
        FROM completions c
        JOIN service_types st ON st.id = c.service_type_id
        LEFT JOIN districts d ON d.id = c.district_id
        LEFT JOIN crews cr ON cr.id = c.crew_id
        WHERE c.submitted_at >= :start AND c.submitted_at < :end
    ) x
    GROUP BY grp
"""

_SHIFT_SQL = """
    SELECT grp, sum(extract(epoch FROM ends_at - starts_at)) AS seconds
    FROM (
        SELECT {key} AS grp, sh.starts_at, sh.ends_at
        FROM shifts sh JOIN crews cr ON cr.id = sh.crew_id
        WHERE sh.starts_at >= :start AND sh.starts_at < :end AND sh.cancelled_at IS NULL
    ) x
    GROUP BY grp
"""

# The plan in force per day and scope: the highest version that was ever published.
_PLANS_CTE = f"""
    WITH p AS (
        SELECT DISTINCT ON (plan_date, scope_key) id, plan_date,
               plan_date::timestamp AT TIME ZONE :tz AS day_start,
               (plan_date + 1)::timestamp AT TIME ZONE :tz AS day_end,
               to_char(date_trunc('week', plan_date), 'YYYY-MM-DD') AS week
        FROM route_plans
        WHERE plan_date BETWEEN :first_day AND :last_day
          AND published_at IS NOT NULL AND status IN ({_PUBLISHED_SQL})
        ORDER BY plan_date, scope_key, version DESC
    )
"""

_DRIVE_SQL = (
    _PLANS_CTE
    + """
    SELECT grp, sum(drive_s) AS seconds
    FROM (
        SELECT {key} AS grp, pr.drive_s
        FROM p JOIN plan_routes pr ON pr.plan_id = p.id JOIN crews cr ON cr.id = pr.crew_id
    ) x
    GROUP BY grp
"""
)

# A stop is done when its work order was completed (a completion's completed_at) on the
# plan's day: one index probe per stop, no pass over the year's completions.
_STOP_SQL = (
    _PLANS_CTE
    + """
    SELECT grp, count(*) AS planned, count(*) FILTER (WHERE done) AS done
    FROM (
        SELECT {key} AS grp, hit.done IS NOT NULL AS done
        FROM p
        JOIN plan_routes pr ON pr.plan_id = p.id
        JOIN crews cr ON cr.id = pr.crew_id
        JOIN route_stops rs ON rs.route_id = pr.id AND rs.kind = 'job'
        {work_order_join}
        LEFT JOIN LATERAL (
            SELECT true AS done FROM completions c
            WHERE c.work_order_id = rs.work_order_id AND c.completed_at >= p.day_start AND c.completed_at < p.day_end
            LIMIT 1
        ) hit ON true
    ) x
    GROUP BY grp
"""
)

# The raw fixes of the period, and for the days whose fixes the retention purge deleted
# (`core.retention`) what it kept of them: the same legs, summed per day. A crew's raw
# fixes count from the day after its last purged one (the fix the purge leaves behind
# starts the first leg after it, as it did before the purge).
_GPS_SQL = """
    WITH purged AS (SELECT crew_id, max(day) AS last_day FROM crew_track_days GROUP BY crew_id)
    SELECT grp, sum(leg_m) AS metres
    FROM (
        SELECT cr.code AS grp, x.leg_m
        FROM (
            SELECT pp.crew_id, pp.at,
                   ST_Distance(geography(pp.location),
                               geography(lag(pp.location) OVER (PARTITION BY pp.crew_id ORDER BY pp.at))) AS leg_m
            FROM position_pings pp
            WHERE pp.at >= :start AND pp.at < :end
        ) x
        JOIN crews cr ON cr.id = x.crew_id
        LEFT JOIN purged ON purged.crew_id = x.crew_id
        WHERE purged.last_day IS NULL OR x.at >= (purged.last_day + 1)::timestamp AT TIME ZONE :tz
        UNION ALL
        -- The leg into a day's first fix is inside the period when the fix before it is.
        SELECT cr.code, d.metres + CASE WHEN d.first_leg_from >= :first_day THEN d.first_leg_m ELSE 0 END
        FROM crew_track_days d JOIN crews cr ON cr.id = d.crew_id
        WHERE d.day BETWEEN :first_day AND :last_day
    ) legs
    GROUP BY grp
"""

# {group key: row} and the total row. The key is the statement's `grp`: text or NULL, except
# width_bucket's week number when grouping completions by week (relabelled by the caller).
type _Grouped = tuple[dict[Any, Any], Any]


def completion_statement(
    group_by: str, period: Period, *, prefix: str = ""
) -> tuple[TextClause, dict[str, Any]]:
    """The completions statement and its extra parameters (the weeks, when grouping by week)."""
    statement = text(prefix + _COMPLETION_SQL.format(key=_COMPLETION_KEYS[group_by]))
    if group_by != "week":
        return statement, {}
    return (
        statement.bindparams(bindparam("week_starts", type_=ARRAY(DateTime(timezone=True)))),
        {"week_starts": _week_starts(period)},
    )


def _grouped(session: Session, sql: str | TextClause, params: dict[str, Any]) -> _Grouped:
    """Rows of a `GROUP BY grp` statement of additive figures: {group key: row}, and the
    total row as their sums (None if there are no rows). A plain GROUP BY, unlike GROUPING
    SETS with the grand total, is aggregated in parallel workers: twice as fast on a year."""
    per: dict[Any, Any] = {}
    statement = text(sql) if isinstance(sql, str) else sql
    for row in session.execute(statement, params).mappings():
        per[row["grp"]] = row
    if not per:
        return per, None
    columns = [k for k in next(iter(per.values())) if k != "grp"]
    total = {
        k: (sum(vals) if (vals := [r[k] for r in per.values() if r[k] is not None]) else None)
        for k in columns
    }
    return per, total


# -- the request cohort: one packed scan, figures and curve in numpy ----------------------------
#
# A year of a large city is a million requests. They are read once, each packed by the
# database into 26 bytes (group, type, status, flags, requested and closed instants) and
# concatenated into a single value, which numpy reads in place: no Python object and no
# protocol message per request. Every cohort figure is then a vectorised count, and the
# Kaplan-Meier curve one sort.

_US = 1_000_000
# 1-based, as array_position is; keyed by plain strings, as the figures look statuses up.
_STATUS_CODES: dict[str, int] = {s: i for i, s in enumerate(REQUEST_STATUSES, start=1)}
_COHORT_SQL = f"""
    SELECT string_agg(packed, ''::bytea) FROM (
        SELECT int8send((({{group}})::int8 << 32) | sr.service_type_id)
               || int2send(((array_position(:statuses, sr.detailed_status::text) << 3)
                            | CASE WHEN sr.duplicate_of_id IS NOT NULL THEN 1 ELSE 0 END
                            | CASE WHEN sr.reopen_count > 0 THEN 2 ELSE 0 END
                            -- `fixed` has proof by construction; this guards the figure all the
                            -- same, by a join to the few completions that are not proof.
                            | CASE WHEN u.id IS NOT NULL THEN 4 ELSE 0 END)::int2)
               -- Epoch microseconds through float8: exact to the microsecond for centuries,
               -- and far cheaper than numeric arithmetic on a million rows.
               || int8send((date_part('epoch', sr.requested_at) * 1000000)::int8)
               || int8send(COALESCE((date_part('epoch', sr.closed_at) * 1000000)::int8, -1)) AS packed
        FROM service_requests sr
        LEFT JOIN completions u ON u.id = sr.completion_id AND u.verdict IN ({_UNPROVEN_SQL})
        {{crew_join}}
        WHERE sr.requested_at >= :start AND sr.requested_at < :end
        -- A fence: without it the planner folds the packing into the aggregate, which runs
        -- in one process; with it the parallel workers pack and the leader only concatenates.
        OFFSET 0
    ) requests
"""
# Per request, 26 bytes: group << 32 | service type; status << 3 | flags (1 duplicate,
# 2 reopened, 4 fixed without proof); requested and closed instants (-1: none).
_COHORT_DTYPE = np.dtype(
    [("group_type", ">i8"), ("status_flags", ">i2"), ("req_us", ">i8"), ("closed_us", ">i8")]
)
_COHORT_GROUP = {
    "service_type": "sr.service_type_id",
    "agency": "sr.service_type_id",
    "district": "COALESCE(sr.district_id, 0)",
    # The crew a request counts for: the one whose completion closed it, else the one its
    # work order is assigned to now.
    "crew": "COALESCE(c.crew_id, wo.crew_id, 0)",
    "week": "0",  # from the requested instant, in numpy
}
_COHORT_CREW_JOIN = (
    "LEFT JOIN completions c ON c.id = sr.completion_id "
    "LEFT JOIN work_orders wo ON wo.id = sr.work_order_id"
)


def _epoch_us(at: datetime) -> int:
    return round(at.timestamp() * _US)


def cohort_statement(
    group_by: str, period: Period, *, prefix: str = ""
) -> tuple[TextClause, dict[str, Any]]:
    """The packed-cohort statement and its parameters (`prefix`, e.g. EXPLAIN, for benchmarks)."""
    sql = _COHORT_SQL.format(
        group=_COHORT_GROUP[group_by], crew_join=_COHORT_CREW_JOIN if group_by == "crew" else ""
    )
    statement = text(prefix + sql).bindparams(bindparam("statuses", type_=ARRAY(Text)))
    return statement, {
        "statuses": list(REQUEST_STATUSES),
        "start": period.starts_at,
        "end": period.ends_at,
    }


def _cohort(session: Session, group_by: str, period: Period) -> np.ndarray:
    """The cohort as a numpy record array, one record per request."""
    # Let the scan and join run in parallel workers: the planner's default transfer cost
    # per row keeps a million-row scan in one process.
    session.execute(
        text(
            "SELECT set_config('parallel_setup_cost', '0', true), "
            "set_config('parallel_tuple_cost', '0', true)"
        )
    )
    packed = session.execute(*cohort_statement(group_by, period)).scalar()
    return np.frombuffer(packed or b"", dtype=_COHORT_DTYPE)


def _week_starts(period: Period) -> list[datetime]:
    """Local Monday midnights from the period's first week to past its end (DST-safe)."""
    monday = period.start - timedelta(days=period.start.weekday())
    weeks = []
    while monday <= period.end:
        weeks.append(datetime.combine(monday, time(0), tzinfo=period.tz))
        monday += timedelta(days=7)
    return weeks


def _group_keys(
    session: Session, group_by: str, ids: np.ndarray, req_us: np.ndarray, period: Period
) -> tuple[np.ndarray, list[str | None]]:
    """Per row, the index of its group; and each group's key (code, agency, or week date)."""
    if group_by == "week":
        starts = _week_starts(period)
        bounds = np.array([_epoch_us(w) for w in starts], dtype=np.int64)
        week = np.searchsorted(bounds, req_us, side="right") - 1
        uniq, inverse = np.unique(week, return_inverse=True)
        return inverse, [starts[int(w)].date().isoformat() for w in uniq]
    table, key_col = {
        "service_type": ("service_types", "code"),
        "agency": ("service_types", "agency"),
        "district": ("districts", "code"),
        "crew": ("crews", "code"),
    }[group_by]
    # The table and column come from the fixed map above, never from the request.
    rows = session.execute(text(f"SELECT id, {key_col} FROM {table}"))
    names: dict[int, str | None] = {row_id: name for row_id, name in rows}
    uniq, inverse = np.unique(ids, return_inverse=True)
    keys = [names.get(int(i)) for i in uniq]  # id 0 (no district / crew) has no name: None
    # Several types share an agency: merge their groups.
    merged = sorted({k for k in keys if k is not None}) + ([None] if None in keys else [])
    position = {k: n for n, k in enumerate(merged)}
    remap = np.array([position[k] for k in keys], dtype=np.int64)
    return (remap[inverse] if len(inverse) else inverse), merged


def _run_start(first: np.ndarray) -> np.ndarray:
    """For each position, the index where its run (of one group) starts."""
    return np.maximum.accumulate(np.where(first, np.arange(len(first)), 0))


def _km_quantiles(
    group: np.ndarray,
    n_groups: int,
    dur: np.ndarray,
    event: np.ndarray,
    quantiles: tuple[float, ...],
) -> np.ndarray:
    """Kaplan-Meier quantiles per group: out[g, i] = smallest event duration t with
    S(t) <= 1 - q_i, or -1 if the curve never gets that low (see the module docstring)."""
    out = np.full((n_groups, len(quantiles)), -1, dtype=np.int64)
    if len(dur) == 0:
        return out
    # One sort of (group, duration, not-an-event) packed into one integer.
    key = np.sort(
        (group.astype(np.int64) << 42) | (dur.astype(np.int64) << 1) | (~event).astype(np.int64)
    )
    g, t, e = key >> 42, (key >> 1) & ((1 << 41) - 1), (key & 1) == 0
    # One run per (group, duration): c requests, d of them closings.
    starts = np.flatnonzero(np.r_[True, (key[1:] >> 1) != (key[:-1] >> 1)])
    c = np.diff(np.r_[starts, len(key)])
    d = np.add.reduceat(e.astype(np.int64), starts)
    rg, rt = g[starts], t[starts]
    # At risk at t: the group's requests minus those with a shorter duration.
    size = np.bincount(g, minlength=n_groups)
    cum = np.cumsum(c)
    first = np.r_[True, rg[1:] != rg[:-1]]
    before = cum - c - (cum - c)[_run_start(first)]
    n = size[rg] - before
    has = d > 0
    rg, rt, d, n = rg[has], rt[has], d[has], n[has]
    if len(rg) == 0:
        return out
    # S as exp(Σ ln(1 - d/n)) per group; a factor of 0 (all still at risk closed) counted apart.
    zero = d == n
    logs = np.where(zero, 0.0, np.log1p(-np.where(zero, 0, d) / n))
    head = _run_start(np.r_[True, rg[1:] != rg[:-1]])
    csum = np.cumsum(logs)
    csum -= np.r_[0.0, csum[:-1]][head]
    zeros = np.cumsum(zero)
    zeros -= np.r_[0, zeros[:-1]][head]
    surv = np.exp(csum)
    for i, q in enumerate(quantiles):
        idx = np.flatnonzero((zeros > 0) | (surv <= 1 - q + KM_TOLERANCE))
        if len(idx):
            # The first hit of each group (rows are in duration order within a group).
            groups, at = np.unique(rg[idx], return_index=True)
            out[groups, i] = rt[idx[at]]
    return out


def _cohort_figures(
    session: Session, group_by: str, period: Period, now: datetime, quantiles: tuple[float, ...]
) -> tuple[dict[str | None, Figures], Figures]:
    """The request figures of the module docstring, per group and in total."""
    rows = _cohort(session, group_by, period)
    # Native integers once: numpy is several times slower on the wire's big-endian ones.
    group_type, status_flags = (
        rows["group_type"].astype(np.int64),
        rows["status_flags"].astype(np.int64),
    )
    req_us, closed_at = rows["req_us"].astype(np.int64), rows["closed_us"].astype(np.int64)
    st, status, flags = group_type & 0xFFFFFFFF, status_flags >> 3, status_flags & 7
    group, keys = _group_keys(session, group_by, group_type >> 32, req_us, period)
    n_groups = len(keys)
    sla_h: dict[int, int] = {
        type_id: hours
        for type_id, hours in session.execute(text("SELECT id, sla_hours FROM service_types"))
    }
    sla_us = np.zeros(max(sla_h, default=0) + 1, dtype=np.int64)
    sla_us[list(sla_h)] = np.array(list(sla_h.values()), dtype=np.int64) * 3600 * _US
    is_closed = np.isin(status, [_STATUS_CODES[s] for s in REQUEST_CLOSED_STATUSES])
    # Time to close (-1: no closing time) and age now, in microseconds.
    to_close = np.where(closed_at >= 0, closed_at - req_us, -1)
    age = _epoch_us(now) - req_us
    due = sla_us[st]
    # Three counts over mutually exclusive codes give every cohort figure.
    # 1. status and whether a `fixed` one lacks proof.
    by_status = np.bincount(
        group * 32 + status * 2 + ((flags >> 2) & 1), minlength=n_groups * 32
    ).reshape(n_groups, 16, 2)
    per_status = by_status.sum(axis=2)
    # 2. closed or not, and the duplicate and reopened flags.
    by_flags = np.bincount(group * 8 + is_closed * 4 + (flags & 3), minlength=n_groups * 8).reshape(
        n_groups, 2, 4
    )
    # 3. timing: 0 closed on time, 1 closed late or without a closing time; open ones
    # 2 + age bucket when not yet due, 8 + age bucket when past due (bucket 5: no bucket).
    bounds = np.array([lo * 86400 * _US for _, lo, _ in BACKLOG_BUCKETS], dtype=np.int64)
    bucket = np.searchsorted(bounds, age, side="right") - 1
    bucket = np.where(bucket < 0, len(BACKLOG_BUCKETS), bucket)
    on_time = is_closed & (closed_at >= 0) & (to_close <= due)
    timing = np.where(is_closed, np.where(on_time, 0, 1), 2 + (age >= due) * 6 + bucket)
    by_timing = np.bincount(group * 14 + timing, minlength=n_groups * 14).reshape(n_groups, 14)
    closed_codes = [_STATUS_CODES[s] for s in REQUEST_CLOSED_STATUSES]
    sums: dict[str, np.ndarray] = {
        "received": per_status.sum(axis=1),
        "duplicates": by_flags[:, :, [1, 3]].sum(axis=(1, 2)),
        "closed": per_status[:, closed_codes].sum(axis=1),
        "closed_fixed_verified": by_status[:, _STATUS_CODES["fixed"], 0],
        "on_time": by_timing[:, 0],
        "late_open": by_timing[:, 8:14].sum(axis=1),
        "open_not_yet_due": by_timing[:, 2:8].sum(axis=1),
        "reopened": by_flags[:, :, [2, 3]].sum(axis=(1, 2)),
        "ever_closed": by_flags[:, 1, :].sum(axis=1) + by_flags[:, 0, [2, 3]].sum(axis=1),
        **{f"closed_{o}": per_status[:, _STATUS_CODES[o]] for o in OTHER_OUTCOMES},
        **{
            f"backlog_{name}": by_timing[:, 2 + b] + by_timing[:, 8 + b]
            for b, (name, _, _) in enumerate(BACKLOG_BUCKETS)
        },
    }
    # Kaplan-Meier on whole seconds: closings are events, the rest censored at now.
    event = is_closed & (closed_at >= 0)
    dur = np.maximum(0, np.where(event, to_close, age) // _US)
    per_km = _km_quantiles(group, n_groups, dur, event, quantiles)
    total_km = _km_quantiles(np.zeros(len(rows), dtype=np.int64), 1, dur, event, quantiles)[0]

    def fill(fig: Figures, v: dict[str, int], km: np.ndarray) -> Figures:
        fig.received, fig.duplicates, fig.closed = v["received"], v["duplicates"], v["closed"]
        fig.open = fig.received - fig.closed
        fig.closed_fixed_verified = v["closed_fixed_verified"]
        fig.closed_other = {o: v[f"closed_{o}"] for o in OTHER_OUTCOMES}
        fig.on_time, fig.late_open, fig.open_not_yet_due = (
            v["on_time"],
            v["late_open"],
            v["open_not_yet_due"],
        )
        fig.on_time_denominator = fig.closed + fig.late_open
        fig.on_time_rate = _rate(fig.on_time, fig.on_time_denominator)
        fig.backlog = {b[0]: v[f"backlog_{b[0]}"] for b in BACKLOG_BUCKETS}
        fig.reopened, fig.ever_closed = v["reopened"], v["ever_closed"]
        fig.reopen_rate = _rate(fig.reopened, fig.ever_closed)
        fig.median_hours_to_close = _hours(int(km[0])) if km[0] >= 0 else None
        fig.p90_hours_to_close = _hours(int(km[1])) if km[1] >= 0 else None
        return fig

    per = {
        key: fill(Figures(group=key), {k: int(s[i]) for k, s in sums.items()}, per_km[i])
        for i, key in enumerate(keys)
    }
    total = fill(Figures(label="Total"), {k: int(s.sum()) for k, s in sums.items()}, total_km)
    return per, total


@dataclass
class _Table:
    """The report's rows by group key, each made when a family of figures first has it,
    and the total row."""

    rows: dict[str | None, Figures]
    total: Figures

    def row(self, key: str | None) -> Figures:
        if key not in self.rows:
            self.rows[key] = Figures(group=key)
        return self.rows[key]

    @property
    def every(self) -> list[Figures]:
        """The rows made so far and the total."""
        return [*self.rows.values(), self.total]


def compute(
    session: Session,
    *,
    start: date,
    end: date,
    group_by: str,
    tz: ZoneInfo,
    now: datetime | None = None,
    quantiles: tuple[float, float] = (0.5, 0.9),
) -> Report:
    """The CitiStat report for [start, end] (dates in `tz`) grouped by `group_by`.

    Each family of figures is its own statement (see the module docstring); the families
    that are undefined for a grouping fill the total only."""
    if group_by not in GROUP_BYS:
        raise ValidationFailed(f"group_by must be one of {', '.join(GROUP_BYS)}", field="group_by")
    period = make_period(start, end, tz)
    now = now or datetime.now(UTC)
    params = {
        "start": period.starts_at,
        "end": period.ends_at,
        "now": now,
        "tz": tz.key,
        "first_day": period.start,
        "last_day": period.end,
    }
    # For the rest of this transaction only: the statements below each aggregate up to a
    # year of rows; JIT compilation costs more than it saves on them (0.6 s per statement
    # measured), and the default work_mem sends the Kaplan–Meier sorts to disk.
    session.execute(
        text("SELECT set_config('jit', 'off', true), set_config('work_mem', '64MB', true)")
    )
    # Requests: the cohort figures, Kaplan-Meier included.
    table = _Table(*_cohort_figures(session, group_by, period, now, quantiles))
    _add_completions(session, table, group_by, period, params)
    crew_hours = _add_crew_hours(session, table, group_by, params)
    _add_planned_stops(session, table, group_by, params)
    if group_by == "crew":
        _add_gps(session, table, params)
    # The hours per crew or week go to every row only now that every row is made.
    for name, values in crew_hours.items():
        for key, fig in table.rows.items():
            setattr(fig, name, values.get(key, 0.0))
    for fig in table.every:
        fig.jobs_per_shift_hour = _rate(fig.jobs_completed, fig.shift_hours)
        fig.planned_done_rate = _rate(fig.planned_done, fig.planned_stops)
    rows = _labelled(session, table, group_by)
    return Report(period.start, period.end, tz.key, group_by, now, rows, table.total)


def _add_completions(
    session: Session, table: _Table, group_by: str, period: Period, params: dict[str, Any]
) -> None:
    """Completions and the work they stand for: counts by verdict, shares, jobs completed
    and the hours on site."""
    completions_sql, week_params = completion_statement(group_by, period)
    per, tot = _grouped(session, completions_sql, params | week_params)
    if group_by == "week":  # width_bucket's 1-based week number -> the week's first day
        weeks = week_params["week_starts"]
        per = {weeks[k - 1].date().isoformat(): r for k, r in per.items()}
    for key, r in per.items():
        _set_completions(table.row(key), r)
    if tot is not None:
        _set_completions(table.total, tot)


def _set_completions(fig: Figures, r: Mapping[str, Any]) -> None:
    fig.completions = r["completions"]
    fig.completions_auto_verified = r["auto_verified"]
    fig.completions_verified_by_supervisor = r["verified"]
    fig.completions_rejected = r["rejected"]
    fig.completions_awaiting_review = r["awaiting"]
    fig.completions_audit_sampled = r["audit_sampled"]
    fig.share_auto_verified = _rate(r["auto_verified"], r["completions"])
    fig.share_reviewed = _rate(r["verified"], r["completions"])
    fig.share_rejected = _rate(r["rejected"], r["completions"])
    fig.jobs_completed = r["auto_verified"] + r["verified"]
    fig.on_site_hours = _hours(r["on_site_s"]) or 0.0


def _add_crew_hours(
    session: Session, table: _Table, group_by: str, params: dict[str, Any]
) -> dict[str, dict[str | None, float]]:
    """Shift and drive hours: they belong to crews and days only, so they are figures per
    crew or per week, and for any other grouping only the total's. Sets the total and makes
    the rows; returns each figure's hours by group key, for every row once all are made."""
    per_crew_or_week: dict[str, dict[str | None, float]] = {}
    for name, keys, sql in (
        ("shift_hours", _SHIFT_KEYS, _SHIFT_SQL),
        ("drive_hours", _DRIVE_KEYS, _DRIVE_SQL),
    ):
        # An undefined key groups everything under NULL; only the total is kept then.
        per, tot = _grouped(session, sql.format(key=keys[group_by] or "NULL::text"), params)
        setattr(table.total, name, (_hours(tot["seconds"]) or 0.0) if tot is not None else 0.0)
        if keys[group_by] is not None:
            per_crew_or_week[name] = {k: _hours(r["seconds"]) or 0.0 for k, r in per.items()}
            for k in per:
                table.row(k)
    return per_crew_or_week


def _add_planned_stops(
    session: Session, table: _Table, group_by: str, params: dict[str, Any]
) -> None:
    """The stops of the plans in force, and how many of them were done on their day."""
    per, tot = _grouped(session, _stop_sql(group_by), params)
    for k, r in per.items():
        fig = table.row(k)
        fig.planned_stops, fig.planned_done = r["planned"], r["done"]
    if tot is not None:
        table.total.planned_stops, table.total.planned_done = tot["planned"], tot["done"]


def _add_gps(session: Session, table: _Table, params: dict[str, Any]) -> None:
    """The kilometres of each crew's GPS track (grouped by crew only): 0 for a crew
    without one."""
    per, tot = _grouped(session, _GPS_SQL, params)
    for fig in table.every:
        fig.gps_km = 0.0
    for k, r in per.items():
        table.row(k).gps_km = round(float(r["metres"] or 0) / 1000, 3)
    if tot is not None:
        table.total.gps_km = round(float(tot["metres"] or 0) / 1000, 3)


def _labelled(session: Session, table: _Table, group_by: str) -> list[Figures]:
    """The rows in key order (the row without a key last), each labelled with its name."""
    labels = _labels(session, group_by)
    ordered = sorted(table.rows.values(), key=lambda f: (f.group is None, f.group or ""))
    for fig in ordered:
        fig.label = (
            labels.get(fig.group, fig.group) if fig.group is not None else _NONE_LABEL[group_by]
        )
    return ordered


_NONE_LABEL = {
    "agency": "(no agency)",
    "service_type": "(no type)",
    "district": "(outside districts)",
    "crew": "(no crew)",
    "week": "(no week)",
}


def _labels(session: Session, group_by: str) -> dict[str | None, str]:
    sql = {
        "service_type": "SELECT code, name FROM service_types",
        "district": "SELECT code, name FROM districts",
        "crew": "SELECT code, name FROM crews",
    }.get(group_by)
    if sql is None:
        return {}
    return {code: name for code, name in session.execute(text(sql))}


# -- open data ------------------------------------------------------------------------

OPEN_DATA_COLUMNS = (
    "id",
    "created",
    "closed",
    "agency",
    "type",
    "type_name",
    "descriptor",
    "status",
    "resolution",
    "district",
    "lat",
    "long",
)

_OPEN_DATA_SQL = f"""
    SELECT sr.public_id, sr.requested_at, sr.closed_at, st.agency, st.code, st.name, sr.description,
           sr.detailed_status IN ({_CLOSED_SQL}) AS is_closed, sr.detailed_status, d.code AS district,
           ST_Y(sr.location) AS lat, ST_X(sr.location) AS lon
    FROM service_requests sr
    JOIN service_types st ON st.id = sr.service_type_id
    LEFT JOIN districts d ON d.id = sr.district_id
    WHERE sr.requested_at >= :start AND sr.requested_at < :end
    ORDER BY sr.requested_at, sr.id
"""


def open_data_rows(
    session: Session, period: Period, *, batch: int = 2000
) -> Iterator[tuple[Any, ...]]:
    """Public rows of the requests received in `period`, streamed from a server-side
    cursor (a city has millions). Only public columns are selected: no contact details
    (they live in request_contacts, never joined here) and no token."""
    tz = period.tz
    result = session.execute(
        text(_OPEN_DATA_SQL),
        {"start": period.starts_at, "end": period.ends_at},
        execution_options={"yield_per": batch},
    )
    for (
        pid,
        created,
        closed,
        agency,
        code,
        name,
        desc,
        is_closed,
        status,
        district,
        lat,
        lon,
    ) in result:
        yield (
            pid,
            iso(created, tz),
            (iso(closed, tz) if is_closed else None) or "",
            agency,
            code,
            name,
            desc,
            "closed" if is_closed else "open",
            status if is_closed else "",
            district or "",
            # Decimal: a number to the CSV (never quoted), printed to exactly 6 places.
            None if lat is None else Decimal(f"{lat:.6f}"),
            None if lon is None else Decimal(f"{lon:.6f}"),
        )


def open_data_csv(session: Session, period: Period) -> Iterator[str]:
    """The CSV text in chunks: header, then rows as they come off the cursor.

    Descriptions are what residents typed: as every text column they are neutralised
    (reports.csvexport), so `=HYPERLINK(...)` reaches the spreadsheet as text."""
    table = CsvTable(OPEN_DATA_COLUMNS, numeric=("lat", "long"))
    chunk = [table.header()]
    for i, r in enumerate(open_data_rows(session, period), 1):
        chunk.append(table.row(r))
        if i % 1000 == 0:
            yield "".join(chunk)
            chunk.clear()
    yield "".join(chunk)


# -- district outlines, for the page's map -----------------------------------------------


@dataclass(frozen=True)
class DistrictOutline:
    code: str
    name: str
    # GeoJSON coordinates of a MultiPolygon (lon, lat), simplified: [polygon][ring][point].
    polygons: list[list[list[tuple[float, float]]]]
    label_at: tuple[float, float]  # a point inside the district (lon, lat)


def district_extent(session: Session) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) of all districts, or None when the city has none."""
    row = session.execute(
        text(
            "SELECT ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b) "
            "FROM (SELECT ST_Extent(geom) AS b FROM districts) e"
        )
    ).one()
    return None if row[0] is None else (row[0], row[1], row[2], row[3])


def district_outlines(session: Session, tolerance: float) -> list[DistrictOutline]:
    """Every district's outline simplified to `tolerance` degrees, by code.

    The map draws these at a few hundred pixels wide: a ward traced from OSM has
    thousands of vertices, which would make the page megabytes; simplified to half a
    pixel it keeps its shape and weighs a few kilobytes. ST_SimplifyPreserveTopology
    (not ST_Simplify) so that no ring collapses or crosses itself. Neighbours are
    simplified one by one, so their shared border may drift apart by up to the
    tolerance: half a pixel, which the eye does not see."""
    rows = session.execute(
        text("""
        SELECT code, name, ST_AsGeoJSON(ST_SimplifyPreserveTopology(geom, :tolerance), 6),
               ST_X(p), ST_Y(p)
        FROM districts, LATERAL (SELECT ST_PointOnSurface(geom) AS p) label
        ORDER BY code
    """),
        {"tolerance": tolerance},
    )
    out = []
    for code, name, geojson, x, y in rows:
        shape = json.loads(geojson)
        polygons = (
            shape["coordinates"] if shape["type"] == "MultiPolygon" else [shape["coordinates"]]
        )
        out.append(DistrictOutline(code, name, polygons, (x, y)))
    return out
