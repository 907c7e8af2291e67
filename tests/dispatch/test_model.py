"""The problem model validates itself and orders drop penalties by urgency."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from dispatch.model import Break, Crew, Job, Matrix, Problem, ProblemError, TimeWindow, replan
from geo.matrix import MatrixError
from tests.factories.problems import H, crew, job, line_matrix, problem


def test_time_window_and_break_validation() -> None:
    with pytest.raises(ProblemError):
        TimeWindow(10, 5)
    with pytest.raises(ProblemError):
        Break("lunch", 3 * H, TimeWindow(11 * H, 13 * H))
    assert Break("lunch", 1800, TimeWindow(11 * H + 1800, 13 * H + 1800)).latest_start == 13 * H
    with pytest.raises(ProblemError):
        crew(breaks=(Break("b", 600, TimeWindow(6 * H, 7 * H)),))  # before the shift


def test_job_validation() -> None:
    with pytest.raises(ProblemError):
        Job("j", 1, priority=6)
    with pytest.raises(ProblemError):
        Job("j", 1, windows=(TimeWindow(0, 10), TimeWindow(5, 20)))
    with pytest.raises(ProblemError):
        Job("j", 1, service=-1)
    j = Job("j", 1, windows=(TimeWindow(50, 60), TimeWindow(0, 10)), skills={"a"})  # type: ignore[arg-type]
    assert j.windows[0].start == 0 and isinstance(j.skills, frozenset)


def test_matrix_is_square_non_negative_and_read_only() -> None:
    with pytest.raises(MatrixError):
        Matrix([[0, 1]], [[0, 1]])
    with pytest.raises(MatrixError):
        Matrix([[0, -1], [1, 0]], [[0, 1], [1, 0]])
    m = line_matrix()
    with pytest.raises(ValueError):
        m.durations[0, 1] = 5
    assert m.durations.dtype == np.int64


def test_problem_cross_checks() -> None:
    with pytest.raises(ProblemError, match="duplicate job"):
        problem([crew()], [job("a", 1), job("a", 2)])
    with pytest.raises(ProblemError, match="out of range"):
        problem([crew()], [job("a", 99)])
    with pytest.raises(ProblemError, match="capacity"):
        problem([crew(capacity=(1,))], [], dimensions=("items", "tons"))
    with pytest.raises(ProblemError, match="demand"):
        problem([crew(capacity=(1,))], [job("a", 1)], dimensions=("items",))
    with pytest.raises(ProblemError, match="not in the problem"):
        problem([crew(locked_first=("zz",))], [job("a", 1)])
    with pytest.raises(ProblemError, match="two crews"):
        problem([crew("c1", locked_first=("a",)), crew("c2", locked_first=("a",))], [job("a", 1)])


def test_problem_is_frozen_and_picklable() -> None:
    p = problem([crew()], [job("a", 1)])
    with pytest.raises(AttributeError):
        p.now = 5  # type: ignore[misc]
    q = pickle.loads(pickle.dumps(p))
    assert q.jobs == p.jobs and (q.matrix.durations == p.matrix.durations).all()


def test_penalties_grow_with_priority_and_overdue_ness() -> None:
    jobs = [
        job("p0", 1, priority=0),
        job("p1", 1, priority=1),
        job("p5", 1, priority=5),
        job("overdue", 1, priority=0, due=6 * H),
        job("very_overdue", 1, priority=0, due=0),
        job("due_tomorrow", 1, priority=0, due=40 * H),
    ]
    pen = problem([crew()], jobs, now=8 * H).penalties
    assert pen["p0"] < pen["p1"] < pen["p5"] < pen["overdue"] < pen["very_overdue"]
    assert pen["due_tomorrow"] == pen["p0"]
    # One priority step outweighs two jobs a step lower; an overdue job outweighs any fresh one.
    assert pen["p1"] > 2 * pen["p0"]
    assert pen["overdue"] > 4 * pen["p5"]


def test_penalty_exceeds_any_insertion_cost() -> None:
    p = problem([crew(cost_per_km=1000, cost_per_hour=5000)], [job("a", 9)])
    # Round trip to the farthest point (120 km) plus a full 8 h shift, in solver units.
    assert p.penalties["a"] > 18 * 1000 * 120_000 + 5 * 5000 * 8 * H


def test_penalties_stay_inside_int64() -> None:
    far = Matrix([[0, 10**9], [10**9, 0]], [[0, 10**9], [10**9, 0]])
    jobs = tuple(Job(str(k), 1, priority=5, due=0) for k in range(2000))
    p = Problem(
        far,
        (Crew("c", 0, 0, TimeWindow(0, 10**9), cost_per_km=10**6, cost_per_hour=10**6),),
        jobs,
        now=10**6,
    )
    assert sum(p.penalties.values()) < 2**62


def test_replan_drops_done_locks_in_progress_and_moves_crews() -> None:
    lunch = Break("lunch", 1800, TimeWindow(11 * H + 1800, 13 * H + 1800))
    base = problem(
        [crew("c1", breaks=(lunch,), max_duration=8 * H), crew("c2")],
        [job("a", 1), job("b", 2), job("c", 3)],
    )
    p = replan(
        base,
        now=14 * H,
        done=["a"],
        positions={"c2": 4},
        in_progress={"c1": ("b", 120)},
        committed_next={"c1": "c"},
    )
    c1, c2 = p.crew("c1"), p.crew("c2")
    assert [j.id for j in p.jobs] == ["b", "c"]
    assert c1.locked_first == ("b", "c") and c1.start == 2 and c1.breaks == ()  # lunch is over
    assert c1.max_duration == 2 * H
    assert p.job("b").service == 120 and p.job("b").windows == (TimeWindow(14 * H, 16 * H),)
    assert c2.start == 4 and c2.shift == TimeWindow(14 * H, 16 * H)
    assert p.now == 14 * H
