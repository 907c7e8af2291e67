"""A big day's parts as jobs of their own (dispatch.parts), on real PostGIS: stored by the
plan's job, each solved and stored by a part's job, assembled by the last one to finish;
failures retried, then named in the failed plan. The part's solve runs in this process
here (`_solve_here`); tests/workers/test_plan_parts.py runs them in real worker processes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from core.models import PlanInput, PlanPart, RoutePlan, StatusEvent
from dispatch.build import Scope
from dispatch.model import (
    Break,
    BreakPlacement,
    Crew,
    Job,
    Matrix,
    Problem,
    Result,
    Route,
    Stop,
    TimeWindow,
)
from dispatch.parts import MAX_PART_RUNS, claim_part, fail_part, requeue_orphaned_part, run_part
from dispatch.plans import (
    PartJobs,
    PlanRequest,
    fail_stale_plans,
    request_plan,
    requeue_orphaned_plan,
    run_plan,
)
from dispatch.solver import SolveParams, solve
from dispatch.wire import WireError, problem_from_wire, problem_to_wire, routes_to_wire
from tests import factories as f
from tests.factories import problems as pf
from tests.factories.plans import DAY, TRAVEL, TZ, crew_on_shift


def _solve_here(problem: Problem, params: SolveParams) -> tuple[Result, int]:
    return solve(problem, params), 0


def _run(
    sessions: sessionmaker[Session],
    part_id: int,
    solve: Callable[[Problem, SolveParams], tuple[Result, int]] = _solve_here,
    requeued: list[int] | None = None,
) -> RoutePlan | None:
    """A part's job, as the worker runs it; the next runs it queues land in `requeued`."""
    into = requeued if requeued is not None else []
    return run_part(
        sessions, part_id, travel=TRAVEL, solve=solve, requeue=lambda s, ids: into.extend(ids)
    )


def _inputs_dropped(db: Session, plan_id: int) -> bool:
    parts = db.scalars(select(PlanPart).where(PlanPart.plan_id == plan_id)).all()
    return db.get(PlanInput, plan_id) is None and all(
        p.problem is None and p.matrix is None for p in parts
    )


def _events(db: Session, plan_id: int) -> list[tuple[str | None, str]]:
    return [
        (e.from_status, e.to_status)
        for e in db.scalars(
            select(StatusEvent)
            .where(StatusEvent.entity == "route_plan", StatusEvent.entity_id == plan_id)
            .order_by(StatusEvent.id)
        )
    ]


def _split_plan(db: Session, sessions: sessionmaker[Session]) -> tuple[RoutePlan, list[int]]:
    """The `day` fixture's plan (a pothole crew and a graffiti crew: two parts), run by
    the plan's job with parts on; the parts' ids its job queued."""
    plan = request_plan(db, PlanRequest(DAY, Scope(), time_limit_s=2), actor=f.SYSTEM)
    db.commit()
    queued: list[int] = []
    run_plan(
        sessions,
        plan.id,
        travel=TRAVEL,
        tz=TZ,
        parts=PartJobs(defer=lambda s, ids: queued.extend(ids), min_split_jobs=1),
    )
    db.expire_all()
    return db.get(RoutePlan, plan.id), queued  # type: ignore[return-value]  # it was just made


def test_the_wire_form_gives_back_the_same_problem() -> None:
    p = pf.problem(
        [
            pf.crew("c1", breaks=(Break("lunch", 1800, TimeWindow(11 * 3600, 13 * 3600)),)),
            pf.crew("c2", skills=frozenset({"asphalt"}), capacity=(), pinned=("j2",)),
        ],
        [
            pf.job("j1", 3, windows=(TimeWindow(9 * 3600, 10 * 3600),), priority=4, due=-3600),
            pf.job("j2", 5, skills=frozenset({"asphalt"}), crews=frozenset({"c2"})),
            pf.job("j3", 9, required=True),
        ],
        now=8 * 3600,
    )
    doc, blob = problem_to_wire(p)
    back = problem_from_wire(doc, blob)
    assert back.matrix == p.matrix
    assert (back.crews, back.jobs, back.dimensions, back.now) == (
        p.crews,
        p.jobs,
        p.dimensions,
        p.now,
    )
    assert dict(back.penalties) == dict(p.penalties)
    with pytest.raises(WireError, match="format 2"):
        problem_from_wire({**doc, "format": 2}, blob)
    with pytest.raises(WireError, match="bytes"):
        problem_from_wire(doc, __import__("zlib").compress(b"\0" * 8))


def test_a_split_day_is_stored_in_parts_and_assembled_by_the_last_part(
    db: Session, sessions: sessionmaker[Session], day: dict
) -> None:
    plan, queued = _split_plan(db, sessions)
    # The plan's job stored the day and queued its parts, and left the plan running.
    assert plan.status == "running"
    parts = db.scalars(
        select(PlanPart).where(PlanPart.plan_id == plan.id).order_by(PlanPart.position)
    ).all()
    assert [p.id for p in parts] == queued and len(parts) == 2
    assert {p.label for p in parts} == {"asphalt", "graffiti"}
    assert all(p.status == "queued" and p.attempts == 0 for p in parts)
    assert db.get(PlanInput, plan.id) is not None
    assert plan.progress["parts"] == {"done": 0, "total": 2}

    assert _run(sessions, queued[0]) is None
    db.expire_all()
    plan = db.get(RoutePlan, plan.id)
    assert plan.status == "running" and plan.progress["parts"] == {"done": 1, "total": 2}
    assert plan.progress["best"]["scheduled"] == 3

    ready = _run(sessions, queued[1])
    assert ready is not None and ready.id == plan.id
    db.expire_all()
    plan = db.get(RoutePlan, plan.id)
    assert plan.status == "ready" and plan.stats["feasible"] is True
    assert plan.stats["scheduled"] == 6 and plan.stats["split"] == 2
    assert {u["reason"] for u in plan.unassigned} == {"needs_pin"}
    assert plan.progress["phase"] == "done" and plan.progress["parts"] == {"done": 2, "total": 2}
    assert {r.crew.code for r in plan.routes} == {"pothole-1", "graffiti-1"}
    assert _events(db, plan.id) == [(None, "queued"), ("queued", "running"), ("running", "ready")]
    done = db.scalars(select(PlanPart).where(PlanPart.plan_id == plan.id)).all()
    assert all(p.status == "done" and p.attempts == 1 and p.pid for p in done)
    assert all(p.started_at is not None and p.finished_at is not None for p in done)
    # The day is in the plan's rows now; its inputs are gone, the parts' record stays.
    assert db.get(PlanInput, plan.id) is None
    assert all(p.problem is None and p.matrix is None and p.result for p in done)

    # A late second run of a part already done changes nothing.
    assert _run(sessions, queued[0]) is None
    db.expire_all()
    assert db.get(RoutePlan, plan.id).status == "ready"
    assert len(_events(db, plan.id)) == 3


def test_the_in_job_path_and_the_parts_path_store_the_same_day(
    db: Session, sessions: sessionmaker[Session], day: dict
) -> None:
    """One merge: a small day solved whole and the same day in parts schedule the same work."""
    whole = request_plan(db, PlanRequest(DAY, Scope(), time_limit_s=2), actor=f.SYSTEM)
    db.commit()
    whole = run_plan(sessions, whole.id, travel=TRAVEL, tz=TZ)
    plan, queued = _split_plan(db, sessions)
    for part_id in queued:
        _run(sessions, part_id)
    db.expire_all()
    plan, whole = db.get(RoutePlan, plan.id), db.get(RoutePlan, whole.id)

    def stops(p: RoutePlan) -> dict[str, list[int]]:
        return {
            r.crew.code: [s.work_order_id for s in r.stops if s.kind == "job"] for r in p.routes
        }

    assert stops(plan) == stops(whole)
    assert plan.unassigned == whole.unassigned


def test_a_part_that_keeps_failing_fails_the_plan_naming_the_part(
    db: Session, sessions: sessionmaker[Session], day: dict
) -> None:
    plan, queued = _split_plan(db, sessions)

    def broken(problem: Problem, params: SolveParams) -> tuple[Result, int]:
        raise RuntimeError("solver fell over")

    part = db.get(PlanPart, queued[1])
    requeued: list[int] = []
    for run in range(1, MAX_PART_RUNS + 1):
        with pytest.raises(RuntimeError, match="fell over"):
            _run(sessions, queued[1], broken, requeued)
        db.expire_all()
        part = db.get(PlanPart, queued[1])
        assert part.attempts == run and part.error == "RuntimeError: solver fell over"
        plan = db.get(RoutePlan, plan.id)
        if run < MAX_PART_RUNS:
            # The failed run queued the next one itself: the part's row is the one count.
            assert part.status == "queued" and plan.status == "running"
            assert requeued == [queued[1]] * run
    assert requeued == [queued[1]] * (MAX_PART_RUNS - 1)
    assert part.status == "failed" and plan.status == "failed"
    assert plan.error == (
        f"part 2 of 2 ({part.label}: 1 crew, 3 jobs) failed {MAX_PART_RUNS} times: "
        "RuntimeError: solver fell over"
    )
    assert _events(db, plan.id)[-1] == ("running", "failed")
    assert _inputs_dropped(db, plan.id)  # a failed plan keeps no matrices either
    # The other part's job, run after, does nothing: its plan has failed.
    assert _run(sessions, queued[0]) is None
    db.expire_all()
    assert db.get(PlanPart, queued[0]).status == "cancelled"


def test_a_part_whose_worker_died_is_queued_again_until_its_runs_are_used_up(
    db: Session, sessions: sessionmaker[Session], day: dict
) -> None:
    plan, queued = _split_plan(db, sessions)
    part = db.get(PlanPart, queued[0])
    for run in range(1, MAX_PART_RUNS + 1):
        # A run starts (counted), and its worker dies mid-solve.
        db.execute(
            text("UPDATE plan_parts SET status = 'running', attempts = :n WHERE id = :id"),
            {"n": run, "id": part.id},
        )
        again = requeue_orphaned_part(db, part.id, note="its worker stopped")
        db.commit()  # as the stalled-job check's transaction does
        db.expire_all()
        part = db.get(PlanPart, queued[0])
        assert again is (run < MAX_PART_RUNS)
    plan = db.get(RoutePlan, plan.id)
    assert part.status == "failed" and plan.status == "failed"
    assert plan.error.startswith("part 1 of 2 (") and "its worker stopped, 3 times" in plan.error
    assert _inputs_dropped(db, plan.id)


def test_a_stale_split_plan_names_the_parts_that_never_came_back(
    db: Session, sessions: sessionmaker[Session], day: dict
) -> None:
    plan, queued = _split_plan(db, sessions)
    _run(sessions, queued[0])
    db.expire_all()
    later = datetime.now(UTC) + timedelta(minutes=20)
    assert fail_stale_plans(db, now=later) == [plan.id]
    plan = db.get(RoutePlan, plan.id)
    assert plan.status == "failed"
    assert plan.error.startswith("part 2 of 2 (") and "jobs) queued long past" in plan.error
    assert _inputs_dropped(db, plan.id)


def test_the_parts_jobs_are_queued_in_the_transaction_that_stores_the_parts(
    db: Session,
) -> None:
    from workers.tasks import _defer_parts

    with db.begin_nested() as nested:
        _defer_parts(db, [101, 102])
        rows = db.execute(
            text(
                "SELECT task_name, args->>'part_id', queue_name FROM procrastinate_jobs "
                "WHERE task_name = 'solve_plan_part' ORDER BY id"
            )
        ).all()
        assert [tuple(r) for r in rows] == [
            ("solve_plan_part", "101", "plans"),
            ("solve_plan_part", "102", "plans"),
        ]
        nested.rollback()
    assert not db.execute(
        text("SELECT 1 FROM procrastinate_jobs WHERE task_name = 'solve_plan_part'")
    ).all()


def test_the_part_task_has_no_retry_of_its_own_and_goes_before_new_plans() -> None:
    """The part's row counts its runs (and queues the next), not procrastinate's retry."""
    from workers.tasks import optimise_plan, solve_plan_part

    assert solve_plan_part.retry_strategy is None
    assert solve_plan_part.priority > optimise_plan.priority


def test_a_part_stored_by_another_release_fails_its_plan_at_once(
    db: Session, sessions: sessionmaker[Session], day: dict
) -> None:
    """A form this release cannot read is never retried: no run of it would get further."""
    plan, queued = _split_plan(db, sessions)
    db.execute(
        text("UPDATE plan_parts SET problem = jsonb_set(problem, '{format}', '2') WHERE id = :id"),
        {"id": queued[0]},
    )
    db.commit()
    requeued: list[int] = []
    with pytest.raises(WireError, match="format 2"):
        _run(sessions, queued[0], requeued=requeued)
    db.expire_all()
    part, plan = db.get(PlanPart, queued[0]), db.get(RoutePlan, plan.id)
    assert requeued == [] and part.status == "failed" and part.attempts == 1
    assert plan.status == "failed" and plan.error.startswith("part 1 of 2 (")
    assert "failed once: stored by another release (stored problem has format 2" in plan.error
    assert _events(db, plan.id)[-1] == ("running", "failed")
    assert _inputs_dropped(db, plan.id)


def test_a_run_that_failed_before_its_claim_is_counted_and_queues_the_next(
    db: Session, sessions: sessionmaker[Session], day: dict
) -> None:
    plan, queued = _split_plan(db, sessions)
    requeued: list[int] = []
    assert not fail_part(
        sessions,
        queued[0],
        "OperationalError: gone",
        run=None,
        requeue=lambda s, i: requeued.extend(i),
    )
    db.expire_all()
    part = db.get(PlanPart, queued[0])
    assert (part.status, part.attempts, part.error) == ("queued", 1, "OperationalError: gone")
    assert requeued == [queued[0]]


def test_a_run_replaced_after_a_false_stall_leaves_the_part_to_the_newer_run(
    db: Session, sessions: sessionmaker[Session], day: dict
) -> None:
    plan, queued = _split_plan(db, sessions)
    first = claim_part(sessions, queued[0])
    assert first is not None and first.run == 1
    with sessions.begin() as s:  # the stalled-job check thought its worker dead
        assert requeue_orphaned_part(s, queued[0], note="its worker stopped")
    second = claim_part(sessions, queued[0])
    assert second is not None and second.run == 2
    requeued: list[int] = []
    # The first run, alive after all, fails: the part is the second run's now.
    assert not fail_part(
        sessions, queued[0], "RuntimeError: late", run=1, requeue=lambda s, i: requeued.extend(i)
    )
    db.expire_all()
    part = db.get(PlanPart, queued[0])
    assert (part.status, part.attempts, part.error) == ("running", 2, "its worker stopped")
    assert requeued == []


def _day_in(s: Session) -> None:
    """The `day` fixture's work, committed for real (`committed`: other connections see it)."""
    depot = f.depot(s)
    f.service_type(s)
    f.service_type(s, "graffiti", skill="graffiti", agency="Sanitation")
    crew_on_shift(s, "pothole-1", ["asphalt"], depot)
    crew_on_shift(s, "graffiti-1", ["graffiti"], depot, agency="Sanitation")
    for i in range(6):
        lon, lat = f.offset(f.LON, f.LAT, 400 * (i + 1))
        f.report(s, "pothole" if i % 2 == 0 else "graffiti", lon=lon, lat=lat)
    s.commit()


def test_two_parts_finishing_at_once_on_two_connections_assemble_the_plan_once(
    committed: sessionmaker[Session],
) -> None:
    with committed() as s:
        _day_in(s)
        plan_id = request_plan(s, PlanRequest(DAY, Scope(), time_limit_s=2), actor=f.SYSTEM).id
        s.commit()
    queued: list[int] = []
    run_plan(
        committed,
        plan_id,
        travel=TRAVEL,
        tz=TZ,
        parts=PartJobs(defer=lambda s, ids: queued.extend(ids), min_split_jobs=1),
    )
    assert len(queued) == 2
    both_solved = threading.Barrier(2, timeout=60)

    def solve_then_wait(problem: Problem, params: SolveParams) -> tuple[Result, int]:
        answer = solve(problem, params)
        both_solved.wait()  # both store their part at the same moment
        return answer, 0

    with ThreadPoolExecutor(2) as pool:
        plans = list(pool.map(lambda i: _run(committed, i, solve_then_wait), queued))
    assert sum(p is not None for p in plans) == 1
    with committed() as s:
        assert s.get(RoutePlan, plan_id).status == "ready"  # type: ignore[union-attr]
        assert _events(s, plan_id) == [
            (None, "queued"),
            ("queued", "running"),
            ("running", "ready"),
        ]


def test_a_plan_built_again_replaces_its_parts_and_their_old_jobs_do_nothing(
    db: Session, sessions: sessionmaker[Session], day: dict
) -> None:
    plan, first = _split_plan(db, sessions)
    # Its job's worker died after storing the parts: the plan is queued and run again.
    assert requeue_orphaned_plan(db, plan.id, note="its worker stopped")
    db.commit()
    again: list[int] = []
    run_plan(
        sessions,
        plan.id,
        travel=TRAVEL,
        tz=TZ,
        parts=PartJobs(defer=lambda s, ids: again.extend(ids), min_split_jobs=1),
    )
    db.expire_all()
    parts = db.scalars(select(PlanPart).where(PlanPart.plan_id == plan.id)).all()
    assert sorted(p.id for p in parts) == sorted(again) and not set(first) & set(again)
    assert all(_run(sessions, i) is None for i in first)  # the first build's parts are gone
    assert [_run(sessions, i) is not None for i in again] == [False, True]
    db.expire_all()
    assert db.get(RoutePlan, plan.id).status == "ready"


def test_a_defer_that_raises_stores_no_parts(
    db: Session, sessions: sessionmaker[Session], day: dict
) -> None:
    plan = request_plan(db, PlanRequest(DAY, Scope(), time_limit_s=2), actor=f.SYSTEM)
    db.commit()

    def down(s: Session, ids: list[int]) -> None:
        raise RuntimeError("queue unreachable")

    with pytest.raises(RuntimeError, match="unreachable"):
        run_plan(
            sessions, plan.id, travel=TRAVEL, tz=TZ, parts=PartJobs(defer=down, min_split_jobs=1)
        )
    db.expire_all()
    assert db.get(RoutePlan, plan.id).status == "failed"
    assert not db.scalars(select(PlanPart).where(PlanPart.plan_id == plan.id)).all()
    assert db.get(PlanInput, plan.id) is None


def test_the_wire_form_writes_every_field_so_a_new_one_forces_a_format_bump() -> None:
    """A field added to the model and not to the wire would be lost between workers: this
    fails until it is written (and FORMAT bumped, for the workers still on the old one)."""
    p = pf.problem(
        [pf.crew("c1", breaks=(Break("lunch", 1800, TimeWindow(11 * 3600, 13 * 3600)),))],
        [pf.job("j1", 1)],
    )
    doc, _ = problem_to_wire(p)
    names = {fl.name for fl in fields(Problem)}
    assert names - {"matrix"} <= set(doc) and "matrix" in doc
    assert {fl.name for fl in fields(Crew)} == set(doc["crews"][0])
    assert {fl.name for fl in fields(Job)} == set(doc["jobs"][0])
    assert {fl.name for fl in fields(Break)} == set(doc["crews"][0]["breaks"][0])
    matrix_meta = {"durations", "distances", "provider", "fallback_pairs", "off_network"}
    assert {fl.name for fl in fields(Matrix)} == matrix_meta
    route = solve(p, SolveParams(time_limit_s=1)).routes[0]
    out = routes_to_wire([route], [])["routes"][0]
    assert {fl.name for fl in fields(Route)} == set(out)
    assert len(fields(Stop)) == len(out["stops"][0]) and len(fields(BreakPlacement)) == 4
