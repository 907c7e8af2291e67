"""CitiStat: the city's accountability numbers for a period, per group and in total.

Everything is computed in PostgreSQL from the live tables (no cached aggregates, so
there is nothing that can drift from the data). `compute()` runs one statement per
family of figures; the request figures and the Kaplan–Meier curve are set-based
(GROUP BY GROUPING SETS and window functions), so a year of a large city is a couple
of sequential scans, not a million rows in Python.

The period is a range of dates in the city's time zone: `start` 00:00 to `end + 1 day`
00:00 (so `end` is inclusive). "now" is the instant the report is computed for.

Definitions (every figure, one place; "the cohort" = requests with `requested_at` in
the period, duplicates included: they are real reports that get closed like any other)

| figure | definition |
|---|---|
| received | requests in the cohort |
| duplicates | cohort requests with `duplicate_of_id` set |
| open / closed | cohort requests whose `detailed_status` is now open / closed (`REQUEST_CLOSED_STATUSES`) |
| closed_fixed_verified | cohort requests now `fixed` whose completion (`completion_id`) has verdict `auto_verified` or `verified`; a `fixed` request without such proof is in `closed` only |
| closed_other[outcome] | cohort requests now closed with that outcome: duplicate, not_found, no_action_needed, referred, cancelled |
| due | `requested_at + service_types.sla_hours` |
| on_time | closed requests with `closed_at <= due` |
| late_open | open requests with `due <= now` (late work still waiting: never hidden) |
| open_not_yet_due | open requests with `due > now`: undetermined, outside the on-time rate |
| on_time_denominator | closed + late_open |
| on_time_rate | on_time / on_time_denominator (null when 0) |
| median / p90_hours_to_close | Kaplan–Meier estimate of the time from `requested_at` to `closed_at` (see `_KM_SQL`): closed requests are events at `closed_at - requested_at`, open ones are right-censored at `now - requested_at`. S(t) = Π over event times t_i <= t of (1 - d_i / n_i), d_i = closings at t_i, n_i = requests still open just before t_i (censored at t_i count as at risk). The q-quantile is the smallest event time t with S(t) <= 1 - q (a 1e-9 tolerance absorbs the floating-point product); null ("not reached") if the curve never gets that low. Durations are whole seconds (truncated), reported in hours. Unlike the median of closed requests only, slow work that is still open pulls it up |
| backlog[bucket] | open cohort requests by age `now - requested_at`: lt_1d [0, 1 d), 1_3d [1, 3 d), 3_7d [3, 7 d), 7_30d [7, 30 d), gt_30d [30 d, ∞) |
| reopened | cohort requests with `reopen_count > 0` |
| ever_closed | cohort requests closed now or with `reopen_count > 0` |
| reopen_rate | reopened / ever_closed (null when 0) |
| completions | completions with `submitted_at` in the period; grouped by their work order's service type / agency / district, by `completions.crew_id`, or by the week of `submitted_at` |
| completions_auto_verified / _verified_by_supervisor / _rejected / _awaiting_review | those completions by verdict: auto_verified / verified / rejected / needs_review |
| completions_audit_sampled | those completions with `audit_sampled` |
| share_auto_verified / share_reviewed / share_rejected | the three counts above / completions (null when 0); reviewed = verified by a supervisor |
| jobs_completed | completions in the period with verdict auto_verified or verified (work really done) |
| shift_hours | Σ (ends_at - starts_at) of shifts starting in the period (breaks included); by crew or by week of `starts_at`; null for the other groupings (a shift has no service type or district) |
| jobs_per_shift_hour | jobs_completed / shift_hours (null when either is null or 0) |
| drive_hours | Σ `plan_routes.drive_s` of the plan in force for each day of the period: per (plan_date, scope_key) the highest version that was published (`published_at` set, status published or superseded); by crew or by week of plan_date; null for other groupings |
| on_site_hours | for each work-order status event `completed` in the period whose previous on_site/completed event of the same order is `on_site`: the time between the two; grouped by the work order (type, agency, district), by the crew of the user who reported it (else the order's crew), or by week of the completed event |
| gps_km | only for group_by=crew (null otherwise, also in the total): Σ great-circle distance between consecutive `position_pings` of the crew inside the period. Raw fixes, so GPS jitter while standing still adds a little |
| planned_stops | job stops in the plans in force (as for drive_hours) for the days of the period; grouped by the stop's crew, its work order (type, agency, district) or the week of plan_date |
| planned_done | those stops whose work order has a `completed` status event on the plan's day (city time zone) |
| planned_done_rate | planned_done / planned_stops (null when 0) |

Rates are rounded to 4 decimals, hours to 4 decimals, kilometres to 3.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.errors import ValidationFailed
from core.models import REQUEST_CLOSED_STATUSES

GROUP_BYS = ("agency", "service_type", "district", "crew", "week")
OTHER_OUTCOMES = ("duplicate", "not_found", "no_action_needed", "referred", "cancelled")
# (name, lower bound in days, upper bound in days or None)
BACKLOG_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("lt_1d", 0, 1), ("1_3d", 1, 3), ("3_7d", 3, 7), ("7_30d", 7, 30), ("gt_30d", 30, None),
)
PROVEN = ("auto_verified", "verified")
# Absorbs the rounding of exp(Σ ln(1 - d/n)) so S(t) = 0.5 exactly is seen as reached.
KM_TOLERANCE = 1e-9

_CLOSED_SQL = ", ".join(f"'{s}'" for s in REQUEST_CLOSED_STATUSES)
_PROVEN_SQL = ", ".join(f"'{v}'" for v in PROVEN)


def _week(ts: str) -> str:
    return f"to_char(date_trunc('week', {ts} AT TIME ZONE :tz), 'YYYY-MM-DD')"


# The group key of each source of figures, per group_by; None: not defined for that grouping.
_REQUEST_KEYS = {
    "agency": "st.agency",
    "service_type": "st.code",
    "district": "d.code",
    "crew": "cr.code",
    "week": _week("sr.requested_at"),
}
_COMPLETION_KEYS = {
    "agency": "st.agency",
    "service_type": "st.code",
    "district": "d.code",
    "crew": "cr.code",
    "week": _week("c.submitted_at"),
}
_SHIFT_KEYS: dict[str, str | None] = {
    "agency": None, "service_type": None, "district": None, "crew": "cr.code", "week": _week("sh.starts_at"),
}
_DRIVE_KEYS: dict[str, str | None] = {
    "agency": None, "service_type": None, "district": None, "crew": "cr.code",
    "week": "to_char(date_trunc('week', p.plan_date), 'YYYY-MM-DD')",
}
_ON_SITE_KEYS = {
    "agency": "st.agency",
    "service_type": "st.code",
    "district": "d.code",
    "crew": "cr.code",
    "week": _week("e.at"),
}
_STOP_KEYS = {
    "agency": "st.agency",
    "service_type": "st.code",
    "district": "d.code",
    "crew": "cr.code",
    "week": "to_char(date_trunc('week', p.plan_date), 'YYYY-MM-DD')",
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
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=FLAT_COLUMNS, lineterminator="\r\n")
        w.writeheader()
        for row in [*self.rows, self.total]:
            w.writerow(row.flat())
        return buf.getvalue()


def _rate(num: int | float | None, den: int | float | None) -> float | None:
    if num is None or not den:
        return None
    return round(num / den, 4)


def _hours(seconds: int | float | None, digits: int = 4) -> float | None:
    return None if seconds is None else round(float(seconds) / 3600, digits)


# -- the statements -------------------------------------------------------------------

_REQUEST_FROM = """
    FROM service_requests sr
    JOIN service_types st ON st.id = sr.service_type_id
    LEFT JOIN districts d ON d.id = sr.district_id
    LEFT JOIN completions c ON c.id = sr.completion_id
    {crew_join}
    WHERE sr.requested_at >= :start AND sr.requested_at < :end
"""
# A request's crew: the one whose completion closed it, else the one its work order is
# assigned to now. Only joined when grouping by crew.
_REQUEST_CREW_JOIN = """
    LEFT JOIN work_orders wo ON wo.id = sr.work_order_id
    LEFT JOIN crews cr ON cr.id = COALESCE(c.crew_id, wo.crew_id)
"""


def _request_sql(group_by: str) -> str:
    buckets = []
    for name, lo, hi in BACKLOG_BUCKETS:
        cond = f"age >= interval '{lo} days'" + (f" AND age < interval '{hi} days'" if hi is not None else "")
        buckets.append(f"count(*) FILTER (WHERE NOT is_closed AND {cond}) AS backlog_{name}")
    others = [f"count(*) FILTER (WHERE status = '{o}') AS closed_{o}" for o in OTHER_OUTCOMES]
    source = _REQUEST_FROM.format(crew_join=_REQUEST_CREW_JOIN if group_by == "crew" else "")
    return f"""
    SELECT grp, grouping(grp) AS is_total,
           count(*) AS received,
           count(*) FILTER (WHERE is_dup) AS duplicates,
           count(*) FILTER (WHERE is_closed) AS closed,
           count(*) FILTER (WHERE status = 'fixed' AND verdict IN ({_PROVEN_SQL})) AS closed_fixed_verified,
           {", ".join(others)},
           count(*) FILTER (WHERE is_closed AND closed_at <= due_at) AS on_time,
           count(*) FILTER (WHERE NOT is_closed AND due_at <= :now) AS late_open,
           count(*) FILTER (WHERE NOT is_closed AND due_at > :now) AS open_not_yet_due,
           {", ".join(buckets)},
           count(*) FILTER (WHERE reopen_count > 0) AS reopened,
           count(*) FILTER (WHERE is_closed OR reopen_count > 0) AS ever_closed
    FROM (
        SELECT {_REQUEST_KEYS[group_by]} AS grp,
               sr.detailed_status AS status,
               sr.detailed_status IN ({_CLOSED_SQL}) AS is_closed,
               sr.duplicate_of_id IS NOT NULL AS is_dup,
               sr.closed_at,
               sr.reopen_count,
               c.verdict,
               sr.requested_at + make_interval(hours => st.sla_hours) AS due_at,
               CAST(:now AS timestamptz) - sr.requested_at AS age
        {source}
    ) r
    GROUP BY GROUPING SETS ((grp), ())
    """


def _km_sql(group_by: str, quantiles: tuple[float, ...]) -> str:
    """Kaplan–Meier per group (and for the total, `is_total` = 1) in one statement.

    t: per (group, duration) the closings d and all requests c. k: n, the requests at
    risk at that duration (duration >= t) = all of the group minus those before t, with
    both windows over one sort. s: the running product of (1 - d/n) over event times as
    exp(Σ ln), with factors of 0 (d = n: the last ones at risk all closed) counted apart
    so ln(0) is never taken. Durations are float8 seconds truncated to whole seconds
    (float, not numeric: a million of them are sorted and summed)."""
    source = _REQUEST_FROM.format(crew_join=_REQUEST_CREW_JOIN if group_by == "crew" else "")
    picks = ", ".join(
        f"min(dur) FILTER (WHERE zeros > 0 OR exp(logs) <= {1 - q!r} + {KM_TOLERANCE!r}) AS q{i}"
        for i, q in enumerate(quantiles)
    )
    return f"""
    WITH r AS (
        SELECT {_REQUEST_KEYS[group_by]} AS grp,
               (sr.detailed_status IN ({_CLOSED_SQL}) AND sr.closed_at IS NOT NULL) AS ev,
               greatest(0, floor(date_part('epoch',
                   CASE WHEN sr.detailed_status IN ({_CLOSED_SQL}) AND sr.closed_at IS NOT NULL
                        THEN sr.closed_at ELSE CAST(:now AS timestamptz) END - sr.requested_at)))::bigint AS dur
        {source}
    ), t AS (
        SELECT grouping(grp) AS is_total, grp, dur, count(*) FILTER (WHERE ev) AS d, count(*) AS c
        FROM r GROUP BY GROUPING SETS ((grp, dur), (dur))
    ), k AS (
        SELECT is_total, grp, dur, d,
               sum(c) OVER whole - sum(c) OVER upto + c AS n
        FROM t
        WINDOW whole AS (PARTITION BY is_total, grp),
               upto AS (PARTITION BY is_total, grp ORDER BY dur ROWS UNBOUNDED PRECEDING)
    ), s AS (
        SELECT is_total, grp, dur,
               count(*) FILTER (WHERE d = n) OVER upto AS zeros,
               coalesce(sum(ln(1 - d::float8 / n)) FILTER (WHERE d < n) OVER upto, 0) AS logs
        FROM k WHERE d > 0
        WINDOW upto AS (PARTITION BY is_total, grp ORDER BY dur ROWS UNBOUNDED PRECEDING)
    )
    SELECT grp, is_total, {picks} FROM s GROUP BY is_total, grp
    """


_COMPLETION_SQL = """
    SELECT grp, grouping(grp) AS is_total,
           count(*) AS completions,
           count(*) FILTER (WHERE verdict = 'auto_verified') AS auto_verified,
           count(*) FILTER (WHERE verdict = 'verified') AS verified,
           count(*) FILTER (WHERE verdict = 'rejected') AS rejected,
           count(*) FILTER (WHERE verdict = 'needs_review') AS awaiting,
           count(*) FILTER (WHERE audit_sampled) AS audit_sampled
    FROM (
        SELECT {key} AS grp, c.verdict, c.audit_sampled
        FROM completions c
        JOIN work_orders wo ON wo.id = c.work_order_id
        JOIN service_types st ON st.id = wo.service_type_id
        LEFT JOIN districts d ON d.id = wo.district_id
        LEFT JOIN crews cr ON cr.id = c.crew_id
        WHERE c.submitted_at >= :start AND c.submitted_at < :end
    ) x
    GROUP BY GROUPING SETS ((grp), ())
"""

_SHIFT_SQL = """
    SELECT grp, grouping(grp) AS is_total, sum(extract(epoch FROM ends_at - starts_at)) AS seconds
    FROM (
        SELECT {key} AS grp, sh.starts_at, sh.ends_at
        FROM shifts sh JOIN crews cr ON cr.id = sh.crew_id
        WHERE sh.starts_at >= :start AND sh.starts_at < :end
    ) x
    GROUP BY GROUPING SETS ((grp), ())
"""

# The plan in force per day and scope: the highest version that was ever published.
_PLANS_CTE = """
    WITH p AS (
        SELECT DISTINCT ON (plan_date, scope_key) id, plan_date
        FROM route_plans
        WHERE plan_date BETWEEN :first_day AND :last_day
          AND published_at IS NOT NULL AND status IN ('published', 'superseded')
        ORDER BY plan_date, scope_key, version DESC
    )
"""

_DRIVE_SQL = _PLANS_CTE + """
    SELECT grp, grouping(grp) AS is_total, sum(drive_s) AS seconds
    FROM (
        SELECT {key} AS grp, pr.drive_s
        FROM p JOIN plan_routes pr ON pr.plan_id = p.id JOIN crews cr ON cr.id = pr.crew_id
    ) x
    GROUP BY GROUPING SETS ((grp), ())
"""

_STOP_SQL = _PLANS_CTE + """
    SELECT grp, grouping(grp) AS is_total, count(*) AS planned, count(*) FILTER (WHERE done) AS done
    FROM (
        SELECT {key} AS grp,
               EXISTS (
                   SELECT 1 FROM status_events e
                   WHERE e.entity = 'work_order' AND e.entity_id = rs.work_order_id AND e.to_status = 'completed'
                     AND e.at >= (p.plan_date::timestamp AT TIME ZONE :tz)
                     AND e.at < ((p.plan_date + 1)::timestamp AT TIME ZONE :tz)
               ) AS done
        FROM p
        JOIN plan_routes pr ON pr.plan_id = p.id
        JOIN crews cr ON cr.id = pr.crew_id
        JOIN route_stops rs ON rs.route_id = pr.id AND rs.kind = 'job'
        JOIN work_orders wo ON wo.id = rs.work_order_id
        JOIN service_types st ON st.id = wo.service_type_id
        LEFT JOIN districts d ON d.id = wo.district_id
    ) x
    GROUP BY GROUPING SETS ((grp), ())
"""

# Visits: each `completed` event in the period paired with the event just before it among
# that order's on_site/completed events, when that one is `on_site`. Only orders with a
# completion in the period are read, but all their history (a visit may start earlier).
_ON_SITE_SQL = """
    WITH ev AS (
        SELECT e.entity_id, e.at, e.to_status, e.actor_user_id,
               lag(e.to_status) OVER w AS prev_status, lag(e.at) OVER w AS prev_at
        FROM status_events e
        WHERE e.entity = 'work_order' AND e.to_status IN ('on_site', 'completed') AND e.at < :end
          AND e.entity_id IN (
              SELECT entity_id FROM status_events
              WHERE entity = 'work_order' AND to_status = 'completed' AND at >= :start AND at < :end)
        WINDOW w AS (PARTITION BY e.entity_id ORDER BY e.at, e.id)
    )
    SELECT grp, grouping(grp) AS is_total, sum(extract(epoch FROM done_at - on_site_at)) AS seconds
    FROM (
        SELECT {key} AS grp, e.at AS done_at, e.prev_at AS on_site_at
        FROM ev e
        JOIN work_orders wo ON wo.id = e.entity_id
        JOIN service_types st ON st.id = wo.service_type_id
        LEFT JOIN districts d ON d.id = wo.district_id
        LEFT JOIN users u ON u.id = e.actor_user_id
        LEFT JOIN crews cr ON cr.id = COALESCE(u.crew_id, wo.crew_id)
        WHERE e.to_status = 'completed' AND e.prev_status = 'on_site' AND e.at >= :start
    ) x
    GROUP BY GROUPING SETS ((grp), ())
"""

_GPS_SQL = """
    SELECT grp, grouping(grp) AS is_total, sum(leg_m) AS metres
    FROM (
        SELECT cr.code AS grp,
               ST_Distance(geography(pp.location),
                           geography(lag(pp.location) OVER (PARTITION BY pp.crew_id ORDER BY pp.at))) AS leg_m
        FROM position_pings pp JOIN crews cr ON cr.id = pp.crew_id
        WHERE pp.at >= :start AND pp.at < :end
    ) x
    GROUP BY GROUPING SETS ((grp), ())
"""

type _Grouped = tuple[dict[str | None, Any], Any]


def _grouped(session: Session, sql: str, params: dict[str, Any]) -> _Grouped:
    """Rows of a GROUPING SETS ((grp), ()) statement: {group key: row}, total row."""
    per: dict[str | None, Any] = {}
    total = None
    for row in session.execute(text(sql), params).mappings():
        if row["is_total"]:
            total = row
        else:
            per[row["grp"]] = row
    return per, total




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
    """The CitiStat report for [start, end] (dates in `tz`) grouped by `group_by`."""
    if group_by not in GROUP_BYS:
        raise ValidationFailed(f"group_by must be one of {', '.join(GROUP_BYS)}", field="group_by")
    period = make_period(start, end, tz)
    now = now or datetime.now(UTC)
    params = {
        "start": period.starts_at, "end": period.ends_at, "now": now, "tz": tz.key,
        "first_day": period.start, "last_day": period.end,
    }
    # For the rest of this transaction only: the statements below each aggregate up to a
    # year of rows; JIT compilation costs more than it saves on them (0.6 s per statement
    # measured), and the default work_mem sends the Kaplan–Meier sorts to disk.
    session.execute(text("SELECT set_config('jit', 'off', true), set_config('work_mem', '64MB', true)"))
    rows: dict[str | None, Figures] = {}
    total = Figures(label="Total")

    def row(key: str | None) -> Figures:
        if key not in rows:
            rows[key] = Figures(group=key)
        return rows[key]

    # Requests: the cohort figures.
    per, tot = _grouped(session, _request_sql(group_by), params)
    for key, r in [*per.items(), (None, tot)]:
        if r is None:
            continue
        fig = total if r is tot else row(key)
        fig.received, fig.duplicates, fig.closed = r["received"], r["duplicates"], r["closed"]
        fig.open = fig.received - fig.closed
        fig.closed_fixed_verified = r["closed_fixed_verified"]
        fig.closed_other = {o: r[f"closed_{o}"] for o in OTHER_OUTCOMES}
        fig.on_time, fig.late_open, fig.open_not_yet_due = r["on_time"], r["late_open"], r["open_not_yet_due"]
        fig.on_time_denominator = fig.closed + fig.late_open
        fig.on_time_rate = _rate(fig.on_time, fig.on_time_denominator)
        fig.backlog = {b[0]: r[f"backlog_{b[0]}"] for b in BACKLOG_BUCKETS}
        fig.reopened, fig.ever_closed = r["reopened"], r["ever_closed"]
        fig.reopen_rate = _rate(fig.reopened, fig.ever_closed)

    for r in session.execute(text(_km_sql(group_by, quantiles)), params).mappings():
        fig = total if r["is_total"] else row(r["grp"])
        fig.median_hours_to_close = _hours(r["q0"])
        fig.p90_hours_to_close = _hours(r["q1"])

    # Completions and the work they stand for.
    per, tot = _grouped(session, _COMPLETION_SQL.format(key=_COMPLETION_KEYS[group_by]), params)
    for key, r in [*per.items(), (None, tot)]:
        if r is None:
            continue
        fig = total if r is tot else row(key)
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

    # Shifts and plan routes belong to crews and days only: per crew or week, else just the total.
    per_crew_or_week: dict[str, dict[str | None, float]] = {}
    for name, keys, sql in (("shift_hours", _SHIFT_KEYS, _SHIFT_SQL), ("drive_hours", _DRIVE_KEYS, _DRIVE_SQL)):
        # An undefined key groups everything under NULL; only the total is kept then.
        per, tot = _grouped(session, sql.format(key=keys[group_by] or "NULL::text"), params)
        setattr(total, name, _hours(tot["seconds"]) or 0.0 if tot is not None else 0.0)
        if keys[group_by] is not None:
            per_crew_or_week[name] = {k: _hours(r["seconds"]) or 0.0 for k, r in per.items()}
            for k in per:
                row(k)

    per, tot = _grouped(session, _ON_SITE_SQL.format(key=_ON_SITE_KEYS[group_by]), params)
    for k, r in per.items():
        row(k).on_site_hours = _hours(r["seconds"]) or 0.0
    if tot is not None and tot["seconds"] is not None:
        total.on_site_hours = _hours(tot["seconds"]) or 0.0

    per, tot = _grouped(session, _STOP_SQL.format(key=_STOP_KEYS[group_by]), params)
    for k, r in per.items():
        fig = row(k)
        fig.planned_stops, fig.planned_done = r["planned"], r["done"]
    if tot is not None:
        total.planned_stops, total.planned_done = tot["planned"], tot["done"]

    if group_by == "crew":
        per, tot = _grouped(session, _GPS_SQL, params)
        for fig in [*rows.values(), total]:
            fig.gps_km = 0.0
        for k, r in per.items():
            row(k).gps_km = round(float(r["metres"] or 0) / 1000, 3)
        if tot is not None:
            total.gps_km = round(float(tot["metres"] or 0) / 1000, 3)

    for name, values in per_crew_or_week.items():
        for k, fig in rows.items():
            setattr(fig, name, values.get(k, 0.0))
    for fig in [*rows.values(), total]:
        fig.jobs_per_shift_hour = _rate(fig.jobs_completed, fig.shift_hours)
        fig.planned_done_rate = _rate(fig.planned_done, fig.planned_stops)

    labels = _labels(session, group_by)
    ordered = sorted(rows.values(), key=lambda f: (f.group is None, f.group or ""))
    for fig in ordered:
        fig.label = labels.get(fig.group, fig.group) if fig.group is not None else _NONE_LABEL[group_by]
    return Report(period.start, period.end, tz.key, group_by, now, ordered, total)


_NONE_LABEL = {
    "agency": "(no agency)", "service_type": "(no type)", "district": "(outside districts)",
    "crew": "(no crew)", "week": "(no week)",
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
    "id", "created", "closed", "agency", "type", "type_name", "descriptor", "status", "resolution",
    "district", "lat", "long",
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


def open_data_rows(session: Session, period: Period, *, batch: int = 2000) -> Iterator[tuple[Any, ...]]:
    """Public rows of the requests received in `period`, streamed from a server-side
    cursor (a city has millions). Only public columns are selected: no contact details
    (they live in request_contacts, never joined here) and no token."""
    tz = period.tz
    result = session.execute(
        text(_OPEN_DATA_SQL), {"start": period.starts_at, "end": period.ends_at},
        execution_options={"yield_per": batch},
    )
    for pid, created, closed, agency, code, name, desc, is_closed, status, district, lat, lon in result:
        yield (
            pid,
            created.astimezone(tz).isoformat(timespec="seconds"),
            closed.astimezone(tz).isoformat(timespec="seconds") if closed is not None and is_closed else "",
            agency, code, name, desc,
            "closed" if is_closed else "open",
            status if is_closed else "",
            district or "",
            "" if lat is None else f"{lat:.6f}",
            "" if lon is None else f"{lon:.6f}",
        )


def open_data_csv(session: Session, period: Period) -> Iterator[str]:
    """The CSV text in chunks: header, then rows as they come off the cursor."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(OPEN_DATA_COLUMNS)
    for i, r in enumerate(open_data_rows(session, period), 1):
        w.writerow(r)
        if i % 1000 == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()
