"""build_problem read directly: who and what goes into the solver's problem, and what is
left out with why, for the cases the plan tests do not reach through a whole plan."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from core.models import Crew, Shift, ShiftBreak
from dispatch.build import Locks, Scope, build_problem
from geo.travel import StraightLineProvider
from tests import factories as f

TZ = ZoneInfo("Europe/Andorra")
DAY = date.today() + timedelta(days=1)
TRAVEL = StraightLineProvider(detour_factor=1.3, speed_kmh=30)


def _at(h: int, m: int = 0) -> datetime:
    return datetime.combine(DAY, time(h, m), TZ)


def _on_shift(db: Session, code: str, depot_id: int | None) -> Crew:
    crew = f.crew(db, code)
    crew.depot_id = depot_id
    db.add(
        Shift(
            crew_id=crew.id,
            starts_at=_at(7),
            ends_at=_at(15),
            breaks=[ShiftBreak(earliest_start=_at(11), latest_end=_at(13), minutes=30)],
        )
    )
    db.flush()
    return crew


def test_a_crew_without_a_yard_is_left_out_and_the_others_are_vehicles(db: Session) -> None:
    yard = f.depot(db)
    f.service_type(db)
    routed = _on_shift(db, "pothole-1", yard.id)
    _on_shift(db, "pothole-2", None)
    built = build_problem(db, plan_date=DAY, scope=Scope(), tz=TZ, travel=TRAVEL)
    assert built.excluded_crews == [
        {
            "crew": "pothole-2",
            "reason": "no_depot",
            "message": "pothole-2 has no yard to start from",
        }
    ]
    (crew,) = built.problem.crews
    assert crew.id == str(routed.id) and set(built.crews) == set(built.shifts) == {crew.id}
    # Seconds since local midnight: the shift 07:00-15:00, the break's window 11:00-13:00.
    assert (crew.shift.start, crew.shift.end) == (7 * 3600, 15 * 3600)
    assert [(b.duration, b.window.start, b.window.end) for b in crew.breaks] == [
        (1800, 11 * 3600, 13 * 3600)
    ]
    assert (crew.start, crew.end, crew.capacity) == (0, 0, (1000,))
    assert built.problem.dimensions == ("asphalt_kg",)
    # No work: the matrix has the yard alone.
    assert built.problem.jobs == () and built.points == [(round(f.LON, 7), round(f.LAT, 7))]
    assert built.provider == TRAVEL.name


def test_must_do_work_for_a_crew_outside_the_scope_is_left_out_with_why(db: Session) -> None:
    yard, other_yard = f.depot(db), f.depot(db, "yard-2")
    f.service_type(db)
    _on_shift(db, "pothole-1", yard.id)
    elsewhere = _on_shift(db, "pothole-9", other_yard.id)
    must = f.report(db).work_order
    must.must_do_on, must.must_do_crew_id = DAY, elsewhere.id
    plain = f.report(db, lon=f.offset(f.LON, f.LAT, 800)[0]).work_order
    db.flush()
    built = build_problem(db, plan_date=DAY, scope=Scope(depot="yard-1"), tz=TZ, travel=TRAVEL)
    assert built.excluded == [
        {
            "work_order_id": must.id,
            "reason": "must_do_crew_unavailable",
            "message": "it must be done by pothole-9: pothole-9 is not in this plan's scope",
        }
    ]
    (job,) = built.problem.jobs
    assert job.id == str(plain.id) and not job.required and job.crews == frozenset()


def test_work_pinned_to_a_crew_is_required_of_it_and_its_own_must_do_crew_is_not_asked(
    db: Session,
) -> None:
    yard = f.depot(db)
    f.service_type(db)
    one, two = _on_shift(db, "pothole-1", yard.id), _on_shift(db, "pothole-2", yard.id)
    wo = f.report(db).work_order
    # Must be done by pothole-2 today, but a dispatcher pinned it to pothole-1: the pin wins.
    wo.must_do_on, wo.must_do_crew_id = DAY, two.id
    db.flush()
    built = build_problem(
        db,
        plan_date=DAY,
        scope=Scope(),
        tz=TZ,
        travel=TRAVEL,
        locks=Locks(pinned={one.id: [wo.id]}),
    )
    (job,) = built.problem.jobs
    assert job.required and job.crews == frozenset({str(one.id)})
    assert {c.id: c.pinned for c in built.problem.crews} == {
        str(one.id): (str(wo.id),),
        str(two.id): (),
    }
    # The job's place follows the crews' yard in the matrix (one point, shared).
    assert job.location == 0 and built.problem.matrix.size == 1
