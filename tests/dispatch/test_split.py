"""Independent parts (by skill) are solved apart and merged into one feasible answer."""

from __future__ import annotations

from dispatch.model import TimeWindow
from dispatch.solver import SolveParams
from dispatch.split import components, solve_split, subproblem
from tests.factories.problems import H, crew, job, problem


def _two_trades():  # noqa: ANN202
    crews = [
        crew("asphalt", skills={"asphalt"}),
        crew("trash", skills={"bulk"}),
        crew("both", skills={"graffiti"}),
    ]
    jobs = [job(f"a{i}", 1 + i % 5, skills={"asphalt"}) for i in range(4)]
    jobs += [
        job(f"b{i}", 6 + i % 3, skills={"bulk"}, windows=(TimeWindow(9 * H, 12 * H),))
        for i in range(3)
    ]
    jobs += [job("nobody", 2, skills={"electrical"})]
    return problem(crews, jobs)


def test_components_follow_skills() -> None:
    p = _two_trades()
    parts = sorted(
        ([p.crews[i].id for i in c], [p.jobs[j].id for j in js]) for c, js in components(p)
    )
    assert parts == [
        ([], ["nobody"]),
        (["asphalt"], ["a0", "a1", "a2", "a3"]),
        (["trash"], ["b0", "b1", "b2"]),
    ]


def test_subproblem_uses_only_its_places() -> None:
    p = _two_trades()
    (c, js) = next(part for part in components(p) if part[0] == [1])
    sub, places = subproblem(p, c, js)
    assert places == [0, 6, 7, 8] and sub.matrix.size == 4
    assert [j.location for j in sub.jobs] == [1, 2, 3]
    assert int(sub.matrix.durations[0, 3]) == int(p.matrix.durations[0, 8])


def test_split_answer_is_one_feasible_whole() -> None:
    p = _two_trades()
    res = solve_split(p, SolveParams(time_limit_s=1, workers=2), min_split_jobs=1)
    assert res.stats["split"] == 3
    assert res.is_feasible(), res.violations()
    served = {s.job_id for r in res.routes for s in r.stops}
    assert served == {"a0", "a1", "a2", "a3", "b0", "b1", "b2"}
    assert res.unassigned_reason("nobody") == "no_skill"
    assert all(s.location == p.job(s.job_id).location for r in res.routes for s in r.stops)
