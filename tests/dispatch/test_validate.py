"""The validator re-times routes on its own and must catch every kind of corruption."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dispatch.model import Break, Result, Route, Stop, TimeWindow, Unassigned, objective_of
from dispatch.solver import SolveParams, solve
from dispatch.validate import check
from tests.factories.problems import H, crew, job, problem


@pytest.fixture(scope="module")
def solved() -> Result:
    lunch = Break("lunch", 1800, TimeWindow(11 * H + 1800, 13 * H + 1800))
    p = problem(
        [
            crew("c1", breaks=(lunch,), capacity=(10,), skills={"bulk"}, max_duration=7 * H),
            crew("c2", capacity=(10,), locked_first=("l",)),
        ],
        [
            job("a", 1, service=H, demand=(4,), windows=(TimeWindow(8 * H, 10 * H),)),
            job("b", 2, service=H, demand=(4,), skills={"bulk"}),
            job("c", 3, service=H, demand=(2,)),
            job("d", 4, service=H, demand=(3,)),
            job("l", 5, service=H, demand=(3,)),
            job("e", 6, service=H, demand=(3,)),
        ],
        dimensions=("items",),
    )
    r = solve(p, SolveParams(time_limit_s=0.5))
    assert r.is_feasible(), r.violations()
    assert all(len(rt.stops) >= 2 for rt in r.routes)
    return r


def _with_route(r: Result, crew_id: str, **changes: object) -> Result:
    routes = tuple(replace(rt, **changes) if rt.crew_id == crew_id else rt for rt in r.routes)  # type: ignore[arg-type]
    return replace(r, routes=routes, objective=objective_of(r.problem, routes, r.unassigned))


def _stops(r: Result, crew_id: str) -> list[Stop]:
    return list(r.route(crew_id).stops)


def test_feasible_result_has_no_violations(solved: Result) -> None:
    assert check(solved.problem, solved) == []
    b = solved.route("c1").breaks[0]
    assert b.break_id == "lunch"


def test_service_started_before_the_crew_can_arrive(solved: Result) -> None:
    stops = _stops(solved, "c1")
    s, t = stops[1].end - stops[1].start, stops[0].end  # no time to drive from stop 0
    stops[1] = replace(stops[1], arrival=t, start=t, end=t + s)
    bad = _with_route(solved, "c1", stops=tuple(stops))
    assert any("leg 1" in v for v in check(bad.problem, bad))


def test_service_outside_every_time_window(solved: Result) -> None:
    c = "c1" if "a" in [s.job_id for s in solved.route("c1").stops] else "c2"
    stops = [
        replace(s, start=s.start + 3 * H, end=s.end + 3 * H, arrival=s.arrival)
        if s.job_id == "a"
        else s
        for s in _stops(solved, c)
    ]
    bad = _with_route(solved, c, stops=tuple(stops))
    assert any("outside" in v for v in check(bad.problem, bad))


def test_capacity_exceeded(solved: Result) -> None:
    p = replace(solved.problem)  # same problem
    tight = replace(p.crew("c1"), capacity=(1,))
    p2 = replace(p, crews=tuple(tight if c.id == "c1" else c for c in p.crews))
    assert any("capacity" in v for v in check(p2, replace(solved, problem=p2)))


def test_break_outside_its_window_or_missing(solved: Result) -> None:
    (b,) = solved.route("c1").breaks
    moved = replace(b, start=8 * H, end=8 * H + 1800)
    bad = _with_route(solved, "c1", breaks=(moved,))
    assert any("outside" in v for v in check(bad.problem, bad))
    gone = _with_route(solved, "c1", breaks=())
    assert any("breaks" in v for v in check(gone.problem, gone))


def test_break_during_service(solved: Result) -> None:
    (b,) = solved.route("c1").breaks
    s = solved.route("c1").stops[-1]
    overlap = replace(b, start=s.start, end=s.start + 1800)
    bad = _with_route(solved, "c1", breaks=(overlap,))
    assert any("overlaps" in v for v in check(bad.problem, bad))


def test_missing_skill(solved: Result) -> None:
    # Give "b" (bulk) to c2, which has no bulk skill.
    b_stop = next(s for s in solved.route("c1").stops if s.job_id == "b")
    c1 = tuple(s for s in solved.route("c1").stops if s.job_id != "b")
    c2 = solved.route("c2")
    last = c2.stops[-1]
    moved = Stop("b", b_stop.location, last.end + 600, last.end + 600, last.end + 600 + H)
    routes = (
        replace(solved.route("c1"), stops=c1),
        replace(c2, stops=c2.stops + (moved,), arrive=moved.end + 600),
    )
    bad = replace(solved, routes=routes)
    assert "crew 'c2' lacks the skill bulk for job 'b'" in check(bad.problem, bad)


def test_job_twice_missing_or_unknown(solved: Result) -> None:
    stops = _stops(solved, "c1")
    twice = _with_route(
        solved,
        "c1",
        stops=tuple(stops + [replace(stops[-1], start=stops[-1].end, end=stops[-1].end + H)]),
    )
    assert any("twice" in v for v in check(twice.problem, twice))
    missing = _with_route(solved, "c1", stops=tuple(stops[:-1]))
    assert any("neither routed nor unassigned" in v for v in check(missing.problem, missing))
    both = replace(solved, unassigned=(Unassigned(stops[0].job_id, "dropped_for_cost"),))
    assert any("both routed and unassigned" in v for v in check(both.problem, both))


def test_lock_broken(solved: Result) -> None:
    stops = _stops(solved, "c2")
    assert stops[0].job_id == "l"
    swapped = [stops[1], stops[0], *stops[2:]]
    bad = _with_route(solved, "c2", stops=tuple(swapped))
    assert any(v.startswith("crew 'c2' must start with job 'l'") for v in check(bad.problem, bad))


def test_shift_end_and_max_duration(solved: Result) -> None:
    late = _with_route(solved, "c1", arrive=17 * H)
    vs = check(late.problem, late)
    assert any("after its shift ends" in v for v in vs) and any("over its maximum" in v for v in vs)


def test_violations_read_in_a_dispatchers_words(solved: Result) -> None:
    from dispatch.validate import Words

    late = _with_route(solved, "c1", arrive=16 * H + 2 * 60)
    words = Words(
        crew=lambda cid: {"c1": "pothole-1", "c2": "pothole-2"}[cid],
        job=lambda jid: f"work order {jid}",
        clock=lambda s: f"{s // H:02d}:{s % H // 60:02d}",
    )
    assert "pothole-1 would be back at 16:02, after its shift ends at 16:00" in check(
        late.problem, late, words
    )


def test_misreported_objective_and_distance(solved: Result) -> None:
    lie = replace(solved, objective=replace(solved.objective, distance=1))
    assert any("objective" in v for v in check(lie.problem, lie))
    r = solved.route("c1")
    bad = replace(
        solved,
        routes=tuple(
            replace(rt, distance=rt.distance - 1) if rt is r else rt for rt in solved.routes
        ),
    )
    assert any("distance" in v for v in check(bad.problem, bad))


def test_result_is_feasible_uses_the_validator(solved: Result) -> None:
    bad = _with_route(solved, "c1", arrive=17 * H)
    assert solved.is_feasible() and not bad.is_feasible()
    assert isinstance(bad.route("c1"), Route)


def test_break_on_a_leg_too_short_for_it(solved: Result) -> None:
    # Squeeze the lunch between two stops that are only a drive apart.
    c2 = solved.route("c2")
    s0, s1 = c2.stops[0], c2.stops[1]
    p = solved.problem
    lunch = Break("lunch", 1800, TimeWindow(8 * H, 16 * H))
    crews = tuple(replace(c, breaks=(lunch,)) if c.id == "c2" else c for c in p.crews)
    p2 = replace(p, crews=crews)
    from dispatch.model import BreakPlacement

    squeezed = replace(c2, breaks=(BreakPlacement("lunch", s0.end, s0.end + 1800, 0),))
    bad = replace(
        solved,
        problem=p2,
        routes=tuple(squeezed if rt.crew_id == "c2" else rt for rt in solved.routes),
    )
    assert s1.start - s0.end < 1800 + p.matrix.durations[s0.location, s1.location]
    assert any("overlaps" in v or "needs" in v for v in check(p2, bad))
