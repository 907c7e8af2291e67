"""A big day's parts as jobs of their own, which any worker on any machine can take.

The plan's job builds the problem once (the travel matrix included), cuts it into its
independent parts (`dispatch.split`), stores the whole problem (`PlanInput`) and each
part's sub-problem (`PlanPart`) in `dispatch.wire`'s form, and queues one
`solve_plan_part` job per part in the same transaction (`store_parts`), then returns.

Each part's job claims its part (`claim_part`: tries counted, worker and process
recorded), solves it in a process of its own with its share of the time limit, and
stores the answer (`finish_part`). Which job assembles is decided under the plan's row
lock: the one whose part leaves no part undone. It merges the parts as `solve_split`
does (`dispatch.split.merge`, the one merge), works out what must-do work displaced, and
stores the plan `ready` with its audit event (`assemble`).

A part that raises is tried again (the task's RetryStrategy); one whose worker was killed
goes back to `queued` (`requeue_orphaned_part`, called by the stalled-job check) and is
run again. After `MAX_PART_RUNS` runs, the plan fails with a reason that names the part
(`fail_part`). A run that comes late, for a part already done, changes nothing. A plan
still `running` far past its time limit is failed by `fail_stale_plans`, which names the
parts not done."""

from __future__ import annotations

import logging
import os
import resource
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from core.db import existing
from core.lifecycle.base import SYSTEM
from core.lifecycle.route_plan import RoutePlanLifecycle
from core.models import Crew as CrewRow
from core.models import PlanInput, PlanPart, RoutePlan, Shift, WorkOrder
from core.status import PlanPartStatus, PlanStatus
from dispatch.build import Built, TravelTimes
from dispatch.model import Problem, Result, Route, Unassigned
from dispatch.solver import SolveParams
from dispatch.split import Split, merge, part_time_limits, solve_in_own_process
from dispatch.wire import problem_from_wire, problem_to_wire, routes_from_wire, routes_to_wire

log = logging.getLogger(__name__)

# Runs of one part before its plan fails: the first and two more (a raised error, or a
# worker killed under it). The task's RetryStrategy allows the same number.
MAX_PART_RUNS = 3

_P = PlanPartStatus


def _label(problem: Problem) -> str:
    skills = sorted({s for c in problem.crews for s in c.skills})
    return ", ".join(skills) or "no skills"


def describe(part: PlanPart, total: int) -> str:
    """A part as a dispatcher reads it in a failed plan's reason."""
    return (
        f"part {part.position + 1} of {total} ({part.label}: {part.crews} crews, {part.jobs} jobs)"
    )


def _context(built: Built) -> dict[str, Any]:
    """What turns the whole problem's answer back into rows, besides the problem itself:
    the rows are read again by id when the plan is assembled."""
    return {
        "midnight": built.midnight.isoformat(),
        "tz": built.tz.key,
        "points": [list(p) for p in built.points],
        "crews": {cid: row.id for cid, row in built.crews.items()},
        "shifts": {cid: shift.id for cid, shift in built.shifts.items()},
        "work_orders": {jid: wo.id for jid, wo in built.work_orders.items()},
        "provider": built.provider,
        "excluded": built.excluded,
        "excluded_crews": built.excluded_crews,
        "carried": sorted(built.carried),
        "planned_from": built.planned_from.isoformat() if built.planned_from else None,
    }


def built_from(s: Session, row: PlanInput) -> Built:
    """The stored plan's `Built`, its rows read by id in this session."""
    ctx = row.context
    # Crews, shifts and work orders are never deleted (plans and the audit trail name them).
    crews = {
        r.id: r for r in s.scalars(select(CrewRow).where(CrewRow.id.in_(ctx["crews"].values())))
    }
    shifts = {r.id: r for r in s.scalars(select(Shift).where(Shift.id.in_(ctx["shifts"].values())))}
    orders = {
        r.id: r
        for r in s.scalars(select(WorkOrder).where(WorkOrder.id.in_(ctx["work_orders"].values())))
    }
    return Built(
        problem=problem_from_wire(row.problem, row.matrix),
        midnight=datetime.fromisoformat(ctx["midnight"]),
        tz=ZoneInfo(ctx["tz"]),
        points=[(float(p[0]), float(p[1])) for p in ctx["points"]],
        crews={key: crews[i] for key, i in ctx["crews"].items()},
        shifts={key: shifts[i] for key, i in ctx["shifts"].items()},
        work_orders={key: orders[i] for key, i in ctx["work_orders"].items()},
        provider=ctx["provider"],
        excluded=ctx["excluded"],
        excluded_crews=ctx["excluded_crews"],
        carried=set(ctx["carried"]),
        planned_from=datetime.fromisoformat(ctx["planned_from"]) if ctx["planned_from"] else None,
    )


def parts_progress(
    plan: RoutePlan,
    done: int,
    total: int,
    best: dict[str, int] | None,
    since: datetime | None = None,
) -> dict[str, Any]:
    """The plan's progress while its parts are solved: `elapsed_s` counts from when the
    parts were stored, as a whole day's counts from the start of its search."""
    now = datetime.now(UTC)
    since = since or now
    return {
        "phase": "solving",
        "elapsed_s": round((now - since).total_seconds(), 1),
        "time_limit_s": plan.time_limit_s,
        "best": best,
        "parts": {"done": done, "total": total},
        "updated_at": now.isoformat(),
    }


def store_parts(
    s: Session, plan: RoutePlan, built: Built, cut: Split, *, at_once: int
) -> list[int]:
    """In the caller's transaction, with the plan's row locked: the whole problem and one
    queued part per independent part; the parts' ids, largest part first. A plan built
    again (its first job's worker died) loses the parts of the first build: a job of one
    of them finds its part gone and does nothing."""
    s.execute(delete(PlanPart).where(PlanPart.plan_id == plan.id))
    s.execute(delete(PlanInput).where(PlanInput.plan_id == plan.id))
    doc, blob = problem_to_wire(built.problem)
    context = _context(built)
    context["orphans"] = [[u.job_id, u.reason] for u in cut.orphans]
    context["found"] = cut.found
    s.add(PlanInput(plan_id=plan.id, problem=doc, matrix=blob, context=context))
    rows = []
    for k, ((part, places), limit) in enumerate(
        zip(cut.parts, part_time_limits(cut, plan.time_limit_s, at_once), strict=True)
    ):
        pdoc, pblob = problem_to_wire(part)
        rows.append(
            PlanPart(
                plan_id=plan.id,
                position=k,
                label=_label(part),
                crews=len(part.crews),
                jobs=len(part.jobs),
                time_limit_s=limit,
                problem=pdoc,
                matrix=pblob,
                places=list(places),
            )
        )
    s.add_all(rows)
    s.flush()
    plan.progress = parts_progress(plan, 0, len(rows), None)
    return [r.id for r in rows]


@dataclass(frozen=True)
class PartWork:
    """A claimed part: what its job solves, and with how long."""

    part_id: int
    plan_id: int
    problem: Problem
    time_limit_s: float
    run: int


def _lock_plan_row(s: Session, plan_id: int) -> RoutePlan | None:
    """The plan's row lock: every decision about a plan's parts is taken under it, so two
    parts' jobs finishing at once see each other's part done, one after the other."""
    return s.get(RoutePlan, plan_id, with_for_update=True, populate_existing=True)


def _locked_part(s: Session, part_id: int) -> tuple[PlanPart, RoutePlan] | None:
    plan_id = s.scalar(select(PlanPart.plan_id).where(PlanPart.id == part_id))
    if plan_id is None:
        return None
    plan = _lock_plan_row(s, plan_id)
    part = s.get(PlanPart, part_id, with_for_update=True, populate_existing=True)
    if plan is None or part is None:
        return None
    return part, plan


def claim_part(sessions: sessionmaker[Session], part_id: int) -> PartWork | None:
    """Mark the part running here, its run counted; None when there is nothing to solve
    (the part is gone, done, failed or cancelled, or its plan is no longer running)."""
    with sessions.begin() as s:
        found = _locked_part(s, part_id)
        if found is None:
            return None  # its plan was built again: a newer part replaced it
        part, plan = found
        if part.status in (_P.DONE, _P.FAILED, _P.CANCELLED) or part.problem is None:
            return None
        if plan.status != PlanStatus.RUNNING:
            part.status = _P.CANCELLED
            part.error = f"plan {plan.id} is {plan.status}"
            return None
        part.attempts += 1
        part.status = _P.RUNNING
        part.worker = socket.gethostname()
        part.pid = os.getpid()
        part.started_at = s.scalar(select(func.now()))
        part.finished_at = None
        assert part.matrix is not None  # stored with its problem, emptied with it
        return PartWork(
            part.id,
            plan.id,
            problem_from_wire(part.problem, part.matrix),
            part.time_limit_s,
            part.attempts,
        )


def _figures(parts: Sequence[PlanPart]) -> dict[str, int]:
    """The done parts' figures so far, as the progress's `best` (their own sums)."""
    scheduled = unassigned = drive = distance = 0
    for p in parts:
        if p.result is None:
            continue
        routes, left = routes_from_wire(p.result)
        scheduled += sum(len(r.stops) for r in routes)
        unassigned += len(left)
        drive += sum(r.duration for r in routes)
        distance += sum(r.distance for r in routes)
    return {
        "scheduled": scheduled,
        "unassigned": unassigned,
        "drive_s": drive,
        "distance_m": distance,
    }


def finish_part(
    sessions: sessionmaker[Session],
    part_id: int,
    result: Result,
    *,
    stats: dict[str, Any],
) -> int | None:
    """Store a solved part; the plan's id when every part is now done (this job then
    assembles it), else None. A late run of a part already done changes nothing, but
    still assembles a plan whose assembler died before storing it."""
    with sessions.begin() as s:
        found = _locked_part(s, part_id)
        if found is None:
            return None
        part, plan = found
        if plan.status != PlanStatus.RUNNING:
            return None
        if part.status != _P.DONE:
            part.status = _P.DONE
            part.result = {**routes_to_wire(result.routes, result.unassigned), "stats": stats}
            part.finished_at = s.scalar(select(func.now()))
            part.error = None
        parts = s.scalars(select(PlanPart).where(PlanPart.plan_id == plan.id)).all()
        done = sum(1 for p in parts if p.status == _P.DONE)
        plan.progress = parts_progress(
            plan, done, len(parts), _figures(parts), since=min(p.created_at for p in parts)
        )
        return plan.id if done == len(parts) else None


def fail_part(sessions: sessionmaker[Session], part_id: int, error: str) -> bool:
    """A run of the part raised `error`. Its last allowed run fails the plan, with a
    reason naming the part (True); before that the part waits for its retry."""
    with sessions.begin() as s:
        found = _locked_part(s, part_id)
        if found is None:
            return False
        part, plan = found
        part.error = error[:2000]
        if part.status == _P.DONE:
            return False
        if part.attempts < MAX_PART_RUNS or plan.status != PlanStatus.RUNNING:
            part.status = _P.QUEUED if plan.status == PlanStatus.RUNNING else _P.CANCELLED
            return False
        part.status = _P.FAILED
        total = s.scalar(select(func.count()).where(PlanPart.plan_id == plan.id)) or 0
        plan.error = f"{describe(part, total)} failed {part.attempts} times: {error}"[:2000]
        RoutePlanLifecycle.transition(s, plan, PlanStatus.FAILED, actor=SYSTEM, note=plan.error)
        return True


def requeue_orphaned_part(s: Session, part_id: int, *, note: str) -> bool:
    """A part left `running` by a worker that died: back to `queued`, so that its retried
    job solves it again. Its run was counted when it started; the plan fails when the
    part's runs are used up (then True is not returned, and the retried job does nothing)."""
    found = _locked_part(s, part_id)
    if found is None:
        return False
    part, plan = found
    if part.status != _P.RUNNING:
        return False
    part.error = note
    if plan.status == PlanStatus.RUNNING and part.attempts >= MAX_PART_RUNS:
        part.status = _P.FAILED
        total = s.scalar(select(func.count()).where(PlanPart.plan_id == plan.id)) or 0
        plan.error = f"{describe(part, total)}: {note}, {part.attempts} times"[:2000]
        RoutePlanLifecycle.transition(s, plan, PlanStatus.FAILED, actor=SYSTEM, note=plan.error)
        return False
    part.status = _P.QUEUED
    return True


def awaiting_assembly(sessions: sessionmaker[Session], part_id: int) -> int | None:
    """The plan's id when the part's plan is running with every part done: its assembler
    died before storing it, and this (late) run of a part assembles it instead."""
    with sessions() as s:
        plan_id = s.scalar(select(PlanPart.plan_id).where(PlanPart.id == part_id))
        if plan_id is None:
            return None
        plan = s.get(RoutePlan, plan_id)
        if plan is None or plan.status != PlanStatus.RUNNING:
            return None
        undone = s.scalar(
            select(func.count()).where(PlanPart.plan_id == plan_id, PlanPart.status != _P.DONE)
        )
        return plan_id if undone == 0 else None


def unfinished_parts(s: Session, plan_id: int) -> list[str]:
    """The parts of a plan not done yet, in words (for a stale plan's reason)."""
    parts = s.scalars(
        select(PlanPart).where(PlanPart.plan_id == plan_id).order_by(PlanPart.position)
    ).all()
    return [f"{describe(p, len(parts))} {p.status}" for p in parts if p.status != _P.DONE]


def assemble(
    sessions: sessionmaker[Session],
    plan_id: int,
    *,
    travel: TravelTimes,
    plan_date: date | None = None,
) -> RoutePlan | None:
    """Merge the done parts into the plan, and store it `ready` (one transaction, under the
    day's lock and the plan's, as `run_plan` stores its solve). None when the plan is no
    longer running (another run assembled it, or it failed). An error fails the plan."""
    from dispatch.plans import displaced_by_must_do, lock_plan, store_ready

    try:
        with sessions.begin() as s:
            plan = existing(s, RoutePlan, plan_id)  # plans are never deleted
            lock_plan(s, plan)
            if plan.status != PlanStatus.RUNNING:
                return None
            parts = s.scalars(
                select(PlanPart).where(PlanPart.plan_id == plan.id).order_by(PlanPart.position)
            ).all()
            if any(p.status != _P.DONE or p.result is None for p in parts):
                return None
            row = s.get(PlanInput, plan.id)
            if row is None:
                raise LookupError(f"plan {plan.id} has parts but no stored problem")
            built = built_from(s, row)
            problem = built.problem
            answers: list[tuple[tuple[Route, ...], tuple[Unassigned, ...], dict[str, object]]] = []
            sub = []
            for p in parts:
                assert p.result is not None  # checked above
                if p.problem is None or p.matrix is None:
                    raise LookupError(f"part {p.id} of plan {plan.id} has no stored problem")
                routes, left = routes_from_wire(p.result)
                answers.append((routes, left, dict(p.result.get("stats") or {})))
                sub.append((problem_from_wire(p.problem, p.matrix), list(p.places)))
            ctx = row.context
            cut = Split(sub, [Unassigned(j, r) for j, r in ctx["orphans"]], int(ctx["found"]))
            # The solve's time, as a whole day's: from the parts' storing (after the build).
            wall = (datetime.now(UTC) - min(p.created_at for p in parts)).total_seconds()
            result = merge(problem, cut, answers, seconds=wall)
            displaced = displaced_by_must_do(built, plan_date or plan.plan_date, result)
            store_ready(
                s,
                plan,
                built,
                result,
                travel=travel,
                solve_s=wall,
                displaced=displaced,
                progress={
                    "time_limit_s": plan.time_limit_s,
                    "parts": {"done": len(parts), "total": len(parts)},
                },
            )
            # The day is in the plan's rows now: its inputs are no longer needed.
            s.delete(row)
            for p in parts:
                p.problem = p.matrix = None
            return plan
    except Exception as exc:
        with sessions.begin() as s:
            plan = existing(s, RoutePlan, plan_id, with_for_update=True)
            plan.error = f"assembling the parts failed: {type(exc).__name__}: {exc}"[:2000]
            if RoutePlanLifecycle.can(plan.status, PlanStatus.FAILED):
                RoutePlanLifecycle.transition(
                    s, plan, PlanStatus.FAILED, actor=SYSTEM, note=plan.error
                )
        raise


def run_part(
    sessions: sessionmaker[Session],
    part_id: int,
    *,
    travel: TravelTimes,
    solve: Callable[[Problem, SolveParams], tuple[Result, int]] = solve_in_own_process,
) -> RoutePlan | None:
    """A part's job: claim, solve (`solve`: in a process of its own, which also says its
    peak memory in MB), store; and, when it was the last part, assemble the plan (which is
    returned then). An error in the solve is counted against the part and raised again,
    for the task's retry."""
    work = claim_part(sessions, part_id)
    if work is None:
        # Done, failed, cancelled or gone; a plan whose assembler died is assembled here.
        plan_id = awaiting_assembly(sessions, part_id)
    else:
        try:
            result, solver_mb = solve(
                work.problem, SolveParams(time_limit_s=work.time_limit_s, workers=1)
            )
        except Exception as exc:
            if fail_part(sessions, part_id, f"{type(exc).__name__}: {exc}"):
                log.warning("plan %s failed: part %s failed its last run", work.plan_id, part_id)
            raise
        stats = {
            **{k: v for k, v in result.stats.items() if isinstance(v, int | float | str | bool)},
            "solver_rss_mb": solver_mb,
            "worker_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        }
        plan_id = finish_part(sessions, part_id, result, stats=stats)
    if plan_id is None:
        return None
    return assemble(sessions, plan_id, travel=travel)
