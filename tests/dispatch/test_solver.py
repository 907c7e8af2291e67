"""Every constraint on instances small enough to check by hand (see conftest: location i
is XS[i] km down a straight road, 1 km = 60 s)."""

from __future__ import annotations

import math
import random
import time
from dataclasses import replace
from itertools import pairwise
from types import SimpleNamespace

import pytest

from dispatch.model import COST_SCALE, Break, Crew, Job, Matrix, Problem, TimeWindow, replan
from dispatch.solver import SolveParams, precheck, solve
from tests.factories.problems import H, crew, job, problem


def test_single_crew_serves_all_in_road_order(fast: SolveParams) -> None:
    p = problem([crew()], [job("a", 3), job("b", 1), job("c", 2)])
    r = solve(p, fast)
    assert r.is_feasible(), r.violations()
    route = r.route("c1")
    assert [s.job_id for s in route.stops] in (["b", "c", "a"], ["a", "c", "b"])
    assert r.unassigned == ()
    # 3 km out and back
    assert route.distance == 6000 and r.objective.distance == 6000
    assert route.duration == 360 and r.objective.drive_time == 360
    first = route.stops[0]
    assert first.arrival == route.depart + 60 * p.matrix.durations[0, first.location] // 60
    assert first.end == first.start + 600


def test_skills_are_respected_and_missing_skill_is_reported(fast: SolveParams) -> None:
    p = problem(
        [
            crew("trash", skills={"bulk"}, start=0, end=0),
            crew("paving", skills={"asphalt"}, start=0, end=0),
        ],
        [
            job("pothole", 1, skills={"asphalt"}),
            job("sofa", 2, skills={"bulk"}),
            job("tree", 3, skills={"arborist"}),
        ],
    )
    r = solve(p, fast)
    assert r.is_feasible(), r.violations()
    assert [s.job_id for s in r.route("paving").stops] == ["pothole"]
    assert [s.job_id for s in r.route("trash").stops] == ["sofa"]
    assert r.unassigned_reason("tree") == "no_skill"


def test_capacity_splits_load_and_reports_oversize(fast: SolveParams) -> None:
    crews = [crew("c1", capacity=(10, 2)), crew("c2", capacity=(10, 2))]
    jobs = [
        job("a", 1, demand=(6, 0)),
        job("b", 2, demand=(6, 0)),
        job("huge", 3, demand=(11, 0)),
        job("asphalt", 4, demand=(0, 3)),
    ]
    r = solve(problem(crews, jobs, dimensions=("items", "tons")), fast)
    assert r.is_feasible(), r.violations()
    assert sorted(len(rt.stops) for rt in r.routes) == [1, 1]
    assert r.unassigned_reason("huge") == "capacity"
    assert r.unassigned_reason("asphalt") == "capacity"


def test_capacity_overflow_on_one_crew_is_dropped_for_cost(fast: SolveParams) -> None:
    r = solve(
        problem(
            [crew(capacity=(10,))],
            [job("a", 1, demand=(6,)), job("b", 2, demand=(6,))],
            dimensions=("items",),
        ),
        fast,
    )
    assert r.is_feasible(), r.violations()
    assert len(r.route("c1").stops) == 1
    assert len(r.unassigned) == 1 and r.unassigned[0].reason == "dropped_for_cost"


def test_time_windows_order_the_route_and_service_starts_inside(fast: SolveParams) -> None:
    # The far job must be served first (its window closes early), the near one late.
    jobs = [
        job("near", 1, windows=(TimeWindow(12 * H, 13 * H),)),
        job("far", 8, windows=(TimeWindow(8 * H, 9 * H),)),
    ]
    r = solve(problem([crew()], jobs), fast)
    assert r.is_feasible(), r.violations()
    stops = r.route("c1").stops
    assert [s.job_id for s in stops] == ["far", "near"]
    assert 8 * H <= stops[0].start <= 9 * H and 12 * H <= stops[1].start <= 13 * H
    assert stops[1].arrival < stops[1].start  # it waits for the window to open


def test_second_time_window_is_used_when_first_is_unreachable(fast: SolveParams) -> None:
    # Location 9 is 60 min away: the 8:00-8:30 window cannot be met, 14:00-15:00 can.
    j = job("x", 9, windows=(TimeWindow(8 * H, 8 * H + 1800), TimeWindow(14 * H, 15 * H)))
    r = solve(problem([crew()], [j]), fast)
    assert r.is_feasible(), r.violations()
    assert 14 * H <= r.route("c1").stops[0].start <= 15 * H


def test_unreachable_window_and_shift_end_are_reported() -> None:
    late = job("late", 9, windows=(TimeWindow(17 * H, 18 * H),))  # after the shift
    tight = job("tight", 9, windows=(TimeWindow(0, 8 * H + 600),))  # 60 min drive, 10 min window
    long_ = job("long", 9, service=7 * H)  # 2 h driving + 7 h on site > 8 h shift
    assert precheck(problem([crew()], [late, tight, long_])) == {
        "late": "time_window",
        "tight": "time_window",
        "long": "time_window",
    }


def test_max_duration_limits_the_route(fast: SolveParams) -> None:
    # "a" alone: 2 h driving + 10 min; "b" alone: 1 h + 30 min; both: 2 h 40 > 2 h 30.
    c = crew(max_duration=2 * H + 1800)
    r = solve(problem([c], [job("a", 9), job("b", 8, service=1800)]), fast)
    assert r.is_feasible(), r.violations()
    route = r.route("c1")
    assert route.arrive - route.depart <= 2 * H + 1800
    assert sum(1 for s in route.stops if s.job_id in ("a", "b")) == 1
    assert precheck(problem([crew(max_duration=H)], [job("a", 9)])) == {"a": "time_window"}


def test_break_is_placed_inside_its_window_and_not_during_service(fast: SolveParams) -> None:
    lunch = Break("lunch", 1800, TimeWindow(11 * H + 1800, 13 * H + 1800))
    jobs = [job(f"j{k}", k, service=H) for k in range(1, 7)]  # 6 h on site + driving
    r = solve(problem([crew(breaks=(lunch,))], jobs), fast)
    assert r.is_feasible(), r.violations()
    route = r.route("c1")
    assert len(route.stops) == 6
    (b,) = route.breaks
    assert b.break_id == "lunch" and b.end - b.start == 1800
    assert b.start >= 11 * H + 1800 and b.end <= 13 * H + 1800
    for s in route.stops:
        assert b.end <= s.start or s.end <= b.start
    assert -1 <= b.after_stop < len(route.stops)


def test_break_forces_a_drop_when_the_day_is_full(fast: SolveParams) -> None:
    # 4 h shift, 30 min break, 7 jobs of 30 min at the depot's doorstep: only 7 x 30 = 3.5 h
    # of work fits with the break, minus the driving, so something is dropped.
    c = crew(shift=TimeWindow(8 * H, 12 * H), breaks=(Break("b", 1800, TimeWindow(9 * H, 11 * H)),))
    jobs = [job(f"j{k}", 1, service=1800) for k in range(7)]
    r = solve(problem([c], jobs), fast)
    assert r.is_feasible(), r.violations()
    assert len(r.route("c1").stops) == 6
    assert [u.reason for u in r.unassigned] == ["dropped_for_cost"]


def test_drop_order_follows_priority(fast: SolveParams) -> None:
    # Room for exactly two 2-hour jobs; the two highest priorities win.
    c = crew(shift=TimeWindow(8 * H, 12 * H + 600))
    jobs = [job(f"p{p}", 1, service=2 * H, priority=p) for p in (0, 3, 1, 2)]
    r = solve(problem([c], jobs), fast)
    assert r.is_feasible(), r.violations()
    assert sorted(s.job_id for s in r.route("c1").stops) == ["p2", "p3"]
    assert sorted(u.job_id for u in r.unassigned) == ["p0", "p1"]


def test_overdue_job_is_never_dropped_for_a_higher_priority_one(fast: SolveParams) -> None:
    c = crew(shift=TimeWindow(8 * H, 10 * H + 600))
    overdue = job("overdue", 1, service=2 * H, priority=0, due=7 * H)
    fresh = job("fresh", 1, service=2 * H, priority=5, due=40 * H)
    r = solve(problem([c], [fresh, overdue], now=8 * H), fast)
    assert r.is_feasible(), r.violations()
    assert [s.job_id for s in r.route("c1").stops] == ["overdue"]
    assert r.unassigned_reason("fresh") == "dropped_for_cost"
    p = r.problem.penalties
    assert p["overdue"] > p["fresh"]


def test_locked_jobs_open_the_route_in_order(fast: SolveParams) -> None:
    # Without the lock the crew would go 1, 2, 6; the committed stop 6 must come first.
    c = crew(locked_first=("far", "near2"))
    r = solve(problem([c, crew("c2")], [job("near1", 1), job("near2", 2), job("far", 6)]), fast)
    assert r.is_feasible(), r.violations()
    assert [s.job_id for s in r.route("c1").stops][:2] == ["far", "near2"]


def test_replan_from_gps_position_with_job_in_progress(fast: SolveParams) -> None:
    base = problem(
        [crew("c1"), crew("c2")],
        [job("done", 1), job("doing", 5), job("next", 4), job("other", 2), job("far", 8)],
    )
    p = replan(
        base,
        now=10 * H,
        done=["done"],
        positions={"c2": 3},
        in_progress={"c1": ("doing", 300)},
        committed_next={"c1": "far"},
    )
    assert "done" not in {j.id for j in p.jobs}
    c1, c2 = p.crew("c1"), p.crew("c2")
    assert c1.locked_first == ("doing", "far") and c1.start == 5 and c1.shift.start == 10 * H
    assert c2.start == 3 and c2.shift.start == 10 * H
    r = solve(p, fast)
    assert r.is_feasible(), r.violations()
    stops = r.route("c1").stops
    assert [s.job_id for s in stops][:2] == ["doing", "far"]
    assert stops[0].start == 10 * H and stops[0].end == 10 * H + 300
    assert all(s.start >= 10 * H for rt in r.routes for s in rt.stops)
    assert r.unassigned == ()


def test_crew_start_and_end_can_differ(fast: SolveParams) -> None:
    r = solve(problem([crew(start=4, end=0)], [job("a", 5)]), fast)
    assert r.is_feasible(), r.violations()
    assert r.route("c1").distance == 1000 + 5000


def test_objective_is_honest_and_costs_are_per_crew(fast: SolveParams) -> None:
    cheap, dear = crew("cheap", cost_per_km=100), crew("dear", cost_per_km=10_000)
    r = solve(problem([dear, cheap], [job("a", 3)]), fast)
    assert [s.job_id for s in r.route("cheap").stops] == ["a"]
    assert r.objective.crew_cost == 600  # 6 km x 100 per km
    assert r.objective.penalty == 0


def test_hourly_cost_pays_for_waiting() -> None:
    # With a per-hour cost the crew leaves as late as it can instead of waiting on site.
    c = crew(cost_per_km=0, cost_per_hour=3600)
    r = solve(
        problem([c], [job("a", 1, windows=(TimeWindow(12 * H, 12 * H + 60),))]),
        SolveParams(time_limit_s=0.5),
    )
    route = r.route("c1")
    assert r.is_feasible(), r.violations()
    assert route.depart == 12 * H - 60 and route.arrive == 12 * H + 600 + 60


def test_without_vroom_ortools_constructs_alone(fast: SolveParams) -> None:
    r = solve(
        problem([crew(), crew("c2")], [job(str(k), k) for k in range(1, 9)]),
        replace(fast, use_vroom=False),
    )
    assert r.is_feasible(), r.violations()
    assert r.stats["start_from"] == "parallel_cheapest_insertion"
    assert r.unassigned == ()


def test_vroom_start_is_read_by_ortools(fast: SolveParams) -> None:
    r = solve(problem([crew(), crew("c2")], [job(str(k), k) for k in range(1, 9)]), fast)
    assert r.stats["start_from"] == "vroom"
    assert r.is_feasible()


def test_the_lns_day_stands_when_ortools_ends_with_none(
    fast: SolveParams, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What OR-Tools gives back when its share runs out before it has a day (status 4,
    # FAIL_TIMEOUT, no routes): seen on bench/large_day.py's 714-job part at 17.5 s, whose
    # plan then served none of the part's jobs although VROOM and the LNS had 390 on routes.
    import dispatch.solver.search as search
    from dispatch.solver.params import WorkerPlan

    monkeypatch.setattr(
        search, "improve", lambda *a, **k: WorkerPlan(status="4", lam=k.get("lam", 0.1))
    )
    # VROOM knows no route-duration limit and puts all five 20-minute jobs on the crew;
    # the LNS's day is trimmed to the hour the full model allows (two jobs), then stands.
    r = solve(
        problem([crew(max_duration=H)], [job(str(k), 1, service=1200) for k in range(5)]), fast
    )
    assert r.is_feasible(), r.violations()
    assert r.stats["start_from"] == "lns", r.stats
    assert r.stats["workers"][0]["ortools_objective"] is None
    assert len(r.route("c1").stops) == 2
    assert sorted(u.reason for u in r.unassigned) == ["dropped_for_cost"] * 3
    assert r.stats["solver_objective"] == r.objective.total_scaled


def test_the_lns_day_keeps_the_breaks_of_an_idle_crew() -> None:
    from dispatch.solver.params import WorkerPlan
    from dispatch.solver.search import day_plan
    from dispatch.solver.timing import to_result

    lunch = (Break("lunch", 1800, TimeWindow(11 * H, 13 * H)),)
    p = problem(
        [crew(breaks=lunch), crew("c2", breaks=lunch)], [job(str(k), k) for k in range(1, 4)]
    )
    plan = day_plan(p, [j.id for j in p.jobs], {"c1": ["1", "2", "3"]}, WorkerPlan())
    r = to_result(p, plan, {})
    assert r.is_feasible(), r.violations()
    assert len(r.route("c1").stops) == 3 and r.route("c2").stops == ()
    assert [b.break_id for b in r.route("c2").breaks] == ["lunch"]


def test_ortools_day_wins_when_it_is_better(fast: SolveParams) -> None:
    r = solve(problem([crew(), crew("c2")], [job(str(k), k) for k in range(1, 9)]), fast)
    w = r.stats["workers"][0]
    assert r.stats["start_from"] == "vroom"
    # The day as timed is what is compared, and what the plan reports.
    assert w["objective"] == r.stats["solver_objective"] == r.objective.total_scaled
    assert w["ortools_objective"] is not None


def test_two_workers_keep_the_better_plan() -> None:
    r = solve(
        problem([crew(), crew("c2")], [job(str(k), k) for k in range(1, 9)]),
        SolveParams(time_limit_s=1.5, workers=2),
    )
    assert r.is_feasible(), r.violations()
    assert len(r.stats["workers"]) == 2
    assert r.stats["solver_objective"] == min(w["objective"] for w in r.stats["workers"])


def test_no_jobs_and_idle_crews(fast: SolveParams) -> None:
    r = solve(problem([crew(breaks=(Break("b", 600, TimeWindow(9 * H, 10 * H)),))], []), fast)
    assert r.is_feasible(), r.violations()
    assert r.route("c1").stops == () and r.objective.distance == 0


def test_vroom_routes_over_max_duration_are_trimmed_for_ortools(fast: SolveParams) -> None:
    # VROOM knows no route-duration limit and would take all five 20-minute jobs; the full
    # model allows an hour: two jobs (2 x 20 min + 2 min driving), not three (62 min).
    c = crew(max_duration=H)
    r = solve(problem([c], [job(str(k), 1, service=1200) for k in range(5)]), fast)
    assert r.is_feasible(), r.violations()
    assert r.stats["start_from"] == "vroom"
    assert len(r.route("c1").stops) == 2
    assert sorted(u.reason for u in r.unassigned) == ["dropped_for_cost"] * 3


def test_locked_job_stays_even_without_the_skill(fast: SolveParams) -> None:
    # The crew is already on site: the lock is a fact, not a choice the skills can veto.
    c = crew(skills={"bulk"}, locked_first=("pothole",))
    r = solve(
        problem([c], [job("pothole", 3, skills={"asphalt"}), job("sofa", 1, skills={"bulk"})]), fast
    )
    assert r.is_feasible(), r.violations()
    assert [s.job_id for s in r.route("c1").stops] == ["pothole", "sofa"]


def test_locked_chain_that_cannot_be_kept_is_reported(fast: SolveParams) -> None:
    # The committed stop's window closed before the crew can get there.
    c = crew(locked_first=("gone",))
    r = solve(
        problem([c], [job("gone", 9, windows=(TimeWindow(8 * H, 8 * H + 600),)), job("a", 1)]), fast
    )
    assert r.is_feasible(), r.violations()
    assert r.unassigned_reason("gone") == "time_window"
    assert [s.job_id for s in r.route("c1").stops] == ["a"]


@pytest.mark.parametrize("seed", [1, 2])
def test_random_instance_with_every_feature_is_feasible(seed: int) -> None:
    rng = random.Random(seed)
    n = 41
    pts = [(rng.uniform(0, 20000), rng.uniform(0, 20000)) for _ in range(n)]
    dist = [[int(math.dist(a, b)) for b in pts] for a in pts]
    dur = [[d * 36 // 300 for d in row] for row in dist]  # 30 km/h, truncated
    lunch = Break("lunch", 1800, TimeWindow(11 * H + 1800, 13 * H + 1800))
    crews = [
        Crew(
            "c0",
            0,
            0,
            TimeWindow(7 * H, 15 * H),
            breaks=(lunch,),
            skills={"a"},
            capacity=(10,),
            locked_first=("5", "9"),
        ),
        Crew(
            "c1",
            0,
            0,
            TimeWindow(7 * H, 15 * H),
            skills={"a", "b"},
            capacity=(12,),
            cost_per_hour=3000,
        ),
        Crew(
            "c2",
            3,
            0,
            TimeWindow(9 * H, 15 * H),
            breaks=(lunch,),
            skills={"b"},
            capacity=(8,),
            max_duration=5 * H,
        ),
    ]
    jobs = []
    for k in range(1, n):
        w: tuple[TimeWindow, ...] = ()
        if rng.random() < 0.4:
            s = rng.randint(7, 13) * H
            w = (
                (TimeWindow(s, s + 2 * H),)
                if rng.random() < 0.7
                else (TimeWindow(s, s + H), TimeWindow(s + 3 * H, s + 4 * H))
            )
        jobs.append(
            Job(
                str(k),
                k,
                service=rng.choice([600, 1200, 1800]),
                windows=w,
                skills={rng.choice("ab")} if rng.random() < 0.5 else set(),
                demand=(rng.randint(0, 3),),
                priority=rng.randint(0, 5),
                due=rng.choice([None, 5 * H, 30 * H]),
            )
        )
    p = Problem(Matrix(dur, dist), tuple(crews), tuple(jobs), dimensions=("items",), now=8 * H)
    r = solve(p, SolveParams(time_limit_s=1.5))
    assert r.is_feasible(), r.violations()
    assert len(r.unassigned) < n - 1
    # Nothing overdue is dropped while a fresh job of any priority is served in its place.
    dropped = {u.job_id for u in r.unassigned if u.reason == "dropped_for_cost"}
    assert all(p.penalties[j] > 0 for j in dropped)


def test_a_day_with_no_crews_leaves_every_job_unassigned() -> None:
    # OR-Tools cannot build a routing model without vehicles; the solver must not try.
    from dispatch.solver import SolveParams, solve
    from tests.factories.problems import job, problem

    res = solve(problem([], [job("x", 1)]), SolveParams(time_limit_s=1))
    assert res.routes == () and res.unassigned_reason("x") == "no_skill" and res.is_feasible()


@pytest.mark.parametrize("op", ["pair", "split", "cluster", "string", "random", "route"])
def test_lns_repairs_part_of_the_day_and_keeps_its_books(
    op: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LNS sends VROOM only the routes a ruin touched and splices the answer into the
    day. Every spliced day, accepted or not, must keep every job on exactly one route or
    unassigned, hold skills and capacities, and carry each route's real cost and the
    day's real score."""
    from dispatch.solver import lns, vroom_adapter

    rng = random.Random(7)
    n = 61
    pts = [(rng.uniform(0, 15000), rng.uniform(0, 15000)) for _ in range(n)]
    dist = [[int(math.dist(a, b)) for b in pts] for a in pts]
    dur = [[d * 36 // 300 for d in row] for row in dist]
    lunch = Break("lunch", 1800, TimeWindow(11 * H + 1800, 13 * H + 1800))
    shift = TimeWindow(7 * H, 15 * H)
    crews = [
        Crew(
            "c0",
            0,
            0,
            shift,
            breaks=(lunch,),
            skills={"a"},
            capacity=(12,),
            locked_first=("5", "9"),
        ),
        Crew("c1", 0, 0, shift, skills={"a", "b"}, capacity=(12,)),
        Crew("c3", 3, 0, TimeWindow(9 * H, 15 * H), breaks=(lunch,), skills={"b"}, capacity=(8,)),
        # Too little room for every item, so that some jobs stay unassigned and move in
        # and out of the repairs; for "split", room to spare, so that crews stay idle.
        *(
            Crew(f"c{k}", 0, 0, shift, skills={"a", "b"}, capacity=(40 if op == "split" else 12,))
            for k in range(4, 9)
        ),
    ]
    jobs = []
    for k in range(1, n):
        s = rng.randint(7, 12) * H
        jobs.append(
            Job(
                str(k),
                k,
                service=rng.choice([300, 600, 900]),
                skills={rng.choice("ab")} if rng.random() < 0.4 else set(),
                windows=(TimeWindow(s, s + 3 * H),) if rng.random() < 0.3 else (),
                demand=(rng.randint(1, 3),),
            )
        )
    p = Problem(Matrix(dur, dist), tuple(crews), tuple(jobs), dimensions=("items",), now=7 * H)
    keep = [j.id for j in p.jobs if j.id not in precheck(p)]
    locked = {"5", "9"}
    spec = vroom_adapter.vroom_spec(p, keep, locked)
    vehicles = {v.id: v for v in spec.vehicles}
    chains = {c.id: [j for j in c.locked_first if j in locked] for c in crews}

    def check(day: vroom_adapter.VroomDay) -> None:
        served = [i for seq in day.steps.values() for t, i in seq if t == "single"]
        assert sorted(served + day.unassigned) == list(range(len(spec.free)))
        assert set(day.costs) == set(day.steps)
        for v, seq in day.steps.items():
            mine = [i for t, i in seq if t == "single"]
            assert mine, "a vehicle without jobs stays out of the day"
            assert all(spec.jobs[i].skills <= vehicles[v].skills for i in mine)
            assert sum(spec.jobs[i].delivery[0] for i in mine) <= vehicles[v].capacity[0]
            path = [
                vehicles[v].start,
                *(spec.jobs[i].location for i in mine),
                vehicles[v].end,
            ]
            # 1 000 cost units per km and none per hour: a route costs its length in metres.
            assert day.costs[v] == sum(dist[a][b] for a, b in pairwise(path))
        for v, c in enumerate(crews):
            assert day.routes[c.id] == chains[c.id] + [
                spec.free[i] for t, i in day.steps.get(v, []) if t == "single"
            ]
        length = sum(day.costs.values())
        assert day.score == length * COST_SCALE + sum(
            p.penalties[spec.free[i]] for i in day.unassigned
        )

    spliced: list[vroom_adapter.VroomDay] = []
    real_splice = lns.splice

    def splice(*args: object) -> vroom_adapter.VroomDay:
        day = real_splice(*args)  # type: ignore[arg-type]
        spliced.append(day)
        return day

    monkeypatch.setattr(lns, "splice", splice)
    start = vroom_adapter.vroom_start(p, keep, locked, SolveParams(time_limit_s=2, workers=1))
    assert start is not None
    assert len(start.steps) < len(crews) if op == "split" else start.unassigned
    check(start)
    # The walk runs until its deadline; it is made to end after a number of repairs
    # rather than of seconds, so that a slow machine tests as many as a fast one. The
    # deadline itself only bounds a walk that never repairs.
    deadline = time.time() + 300

    def clock() -> float:
        return deadline if len(spliced) >= 8 else time.time()

    monkeypatch.setattr(lns, "time", SimpleNamespace(time=clock))
    best = lns.vroom_lns(p, keep, locked, start, deadline, seed=3, ops=(op,))
    assert len(spliced) == 8
    for day in spliced:
        check(day)
    check(best)
    assert best.score <= start.score


def test_a_required_job_fits_by_dropping_lower_value_work(fast: SolveParams) -> None:
    # A one-hour day at location 1 holds four 10-minute jobs next door; the must-do job at
    # 30 km (location 8) costs an hour of driving, so it can only go in alone.
    short = crew(shift=TimeWindow(8 * H, 9 * H + 600))
    near = [job(f"n{k}", 1, service=600, priority=5) for k in range(4)]
    far = job("must", 8, service=600, priority=0)
    optional = solve(problem([short], [*near, far]), fast)
    assert optional.unassigned_reason("must") == "dropped_for_cost"
    r = solve(problem([short], [*near, replace(far, required=True)]), fast)
    assert r.is_feasible(), r.violations()
    assert [s.job_id for s in r.route("c1").stops] == ["must"]
    assert {u.job_id for u in r.unassigned} == {"n0", "n1", "n2", "n3"}


def test_a_job_reserved_for_one_crew_goes_to_it(fast: SolveParams) -> None:
    # c2 starts 60 km away, so left free the job would go to c1 next door.
    p = problem(
        [crew("c1"), crew("c2", start=9, end=9)],
        [job("x", 1, crews={"c2"}, required=True), job("y", 2)],
    )
    r = solve(p, fast)
    assert r.is_feasible(), r.violations()
    assert "x" in [s.job_id for s in r.route("c2").stops]
    bad = replace(
        r,
        routes=(
            replace(r.route("c1"), stops=r.route("c2").stops),
            replace(r.route("c2"), stops=()),
        ),
    )
    assert any("is reserved for crew 'c2', not crew 'c1'" in v for v in bad.violations())


def test_an_impossible_required_job_is_reported_not_a_failed_solve(fast: SolveParams) -> None:
    gone = job("late", 2, required=True, windows=(TimeWindow(6 * H, 7 * H),))
    nobody = job("tree", 3, required=True, skills={"arborist"})
    r = solve(problem([crew()], [gone, nobody, job("a", 1)]), fast)
    assert r.is_feasible(), r.violations()
    assert (r.unassigned_reason("late"), r.unassigned_reason("tree")) == ("time_window", "no_skill")
    assert [s.job_id for s in r.route("c1").stops] == ["a"]


def test_pinned_stops_stay_on_their_crew_in_their_order(fast: SolveParams) -> None:
    # From the yard at 0 km to the one at 60 km, a crew passes 1 km before 5 km; the
    # dispatcher locked 5 km before 1 km on c1.
    jobs = [job("a", 5), job("b", 1), job("c", 3)]
    free = solve(problem([crew("c1", end=9)], jobs), fast)
    assert [s.job_id for s in free.route("c1").stops] == ["b", "c", "a"]
    p = problem(
        [crew("c1", end=9, pinned=("a", "b")), crew("c2")],
        [
            replace(jobs[0], crews={"c1"}, required=True),
            replace(jobs[1], crews={"c1"}, required=True),
            jobs[2],
        ],
    )
    r = solve(p, fast)
    assert r.is_feasible(), r.violations()
    order = [s.job_id for s in r.route("c1").stops]
    assert order.index("a") < order.index("b")
    swapped = replace(
        r,
        routes=tuple(
            replace(rt, stops=tuple(sorted(rt.stops, key=lambda s: s.job_id != "b")))
            if rt.crew_id == "c1"
            else rt
            for rt in r.routes
        ),
    )
    assert any(
        "must keep its locked stops in the order job 'a', job 'b'" in v
        for v in swapped.violations()
    )


def test_what_a_required_job_displaced_is_what_fits_again_without_it(fast: SolveParams) -> None:
    from dispatch.edit import refill_without

    short = crew(shift=TimeWindow(8 * H, 9 * H + 600))
    near = [job(f"n{k}", 1, service=600, priority=5) for k in range(4)]
    far = job("must", 8, service=600, priority=0, required=True)
    r = solve(problem([short], [*near, far]), fast)
    assert refill_without(r.problem, r, {"must"}) == {"n0", "n1", "n2", "n3"}
    # A must-do job that took only spare time displaced nothing.
    roomy = solve(problem([crew()], [*near, far]), fast)
    assert roomy.unassigned == () and refill_without(roomy.problem, roomy, {"must"}) == set()
