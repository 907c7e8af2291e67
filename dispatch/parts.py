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

A part's runs are counted in one place, its row (`attempts`): a run that raises, in its
solve or before (reading its stored input, claiming it), queues the part's next job itself
in the transaction that counts it (`fail_part`), so no run goes uncounted; one whose
worker was killed goes back to `queued` (`requeue_orphaned_part`, called by the stalled-job
check, which queues its job again). After `MAX_PART_RUNS` runs, or at once for input this
release cannot read (`WireError`), the plan fails with a reason that names the part. A run
that comes late, for a part already done or since claimed by another run, changes nothing.
A plan still `running` far past its time limit is failed by `fail_stale_plans`, which
names the parts not done. Every way a plan fails drops its stored inputs (`drop_inputs`).

A part's status is a record of its job's progress, not a lifecycle of its own: its
plan's changes are the audited ones (`RoutePlanLifecycle`), as `docs/ARCHITECTURE.md`
says."""

from __future__ import annotations

import logging
import os
import resource
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db import db_now, existing
from core.lifecycle.base import SYSTEM
from core.lifecycle.route_plan import RoutePlanLifecycle
from core.models import Crew as CrewRow
from core.models import PlanInput, PlanPart, RoutePlan, Shift, WorkOrder
from core.status import PlanPartStatus, PlanStatus
from dispatch.build import Built, TravelTimes
from dispatch.model import Problem, Result, Route, Unassigned
from dispatch.solver import SolveParams
from dispatch.split import PartShape, Split, merge, part_time_limits, solve_in_own_process
from dispatch.wire import (
    FORMAT,
    WireError,
    problem_from_wire,
    problem_to_wire,
    routes_from_wire,
    routes_to_wire,
)

log = logging.getLogger(__name__)

# Runs of one part before its plan fails: the first and two more (a raised error, or a
# worker killed under it), counted in the part's row only.
MAX_PART_RUNS = 3

# Queues one `solve_plan_part` job per part id, in the given session's transaction.
Defer = Callable[[Session, list[int]], None]

_P = PlanPartStatus


def _label(problem: Problem) -> str:
    skills = sorted({s for c in problem.crews for s in c.skills})
    return ", ".join(skills) or "no skills"


def describe(part: PlanPart, total: int) -> str:
    """A part as a dispatcher reads it in a failed plan's reason."""
    return (
        f"part {part.position + 1} of {total} ({part.label}: {_count(part.crews, 'crew')}, "
        f"{_count(part.jobs, 'job')})"
    )


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _context(built: Built) -> dict[str, Any]:
    """What turns the whole problem's answer back into rows, besides the problem itself:
    the rows are read again by id when the plan is assembled."""
    return {
        "format": FORMAT,  # of this context, as of the problem beside it
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
    if ctx.get("format") != FORMAT:
        raise WireError(
            f"stored plan input has format {ctx.get('format')!r}; this release reads {FORMAT}"
        )
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
    *,
    now: datetime,
    since: datetime | None = None,
) -> dict[str, Any]:
    """The plan's progress while its parts are solved: `elapsed_s` counts from when the
    parts were stored, as a whole day's counts from the start of its search; `now` is the
    database's (`db_now`), as the parts' times are."""
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
    plan.progress = parts_progress(plan, 0, len(rows), None, now=db_now(s))
    return [r.id for r in rows]


def drop_inputs(s: Session, plan_id: int) -> None:
    """The plan's stored problem and its parts' are no longer needed (it is ready, or it
    failed): tens of MB on a big day. The parts' record (where, when, result) stays."""
    s.flush()
    s.execute(delete(PlanInput).where(PlanInput.plan_id == plan_id))
    s.execute(
        update(PlanPart)
        .where(PlanPart.plan_id == plan_id)
        .values(problem=None, matrix=None)
        .execution_options(synchronize_session="fetch")
    )


def _fail_plan(s: Session, plan: RoutePlan, reason: str) -> None:
    plan.error = reason[:2000]
    RoutePlanLifecycle.transition(s, plan, PlanStatus.FAILED, actor=SYSTEM, note=plan.error)
    drop_inputs(s, plan.id)


@dataclass(frozen=True)
class PartWork:
    """A claimed part: what its job solves (as stored: `problem()` reads it), with how
    long, and which run of the part this is."""

    part_id: int
    plan_id: int
    doc: dict[str, Any]
    blob: bytes
    time_limit_s: float
    run: int

    def problem(self) -> Problem:
        return problem_from_wire(self.doc, self.blob)


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
        if part.status in (_P.DONE, _P.FAILED, _P.CANCELLED):
            return None
        if plan.status != PlanStatus.RUNNING:
            part.status = _P.CANCELLED
            part.error = f"plan {plan.id} is {plan.status}"
            drop_inputs(s, plan.id)
            return None
        if part.problem is None:
            return None
        part.attempts += 1
        part.status = _P.RUNNING
        part.worker = socket.gethostname()
        part.pid = os.getpid()
        part.started_at = db_now(s)
        part.finished_at = None
        assert part.matrix is not None  # stored with its problem, emptied with it
        # Read after the claim is committed: input it cannot read is a counted run too.
        return PartWork(
            part.id, plan.id, part.problem, part.matrix, part.time_limit_s, part.attempts
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
            part.finished_at = db_now(s)
            part.error = None
        parts = s.scalars(select(PlanPart).where(PlanPart.plan_id == plan.id)).all()
        done = sum(1 for p in parts if p.status == _P.DONE)
        plan.progress = parts_progress(
            plan,
            done,
            len(parts),
            _figures(parts),
            now=db_now(s),
            since=min(p.created_at for p in parts),
        )
        return plan.id if done == len(parts) else None


def fail_part(
    sessions: sessionmaker[Session],
    part_id: int,
    error: str,
    *,
    run: int | None,
    requeue: Defer,
    final: bool = False,
) -> bool:
    """A run of the part raised `error`: `run` is the run its claim counted, None when it
    raised before its claim was stored (then it is counted here). Before the part's last
    allowed run, its next job is queued (`requeue`, in this transaction); the last one, or
    a `final` error, fails the plan with a reason naming the part (True). A run that a
    newer one has replaced (after a false stall) changes nothing."""
    with sessions.begin() as s:
        found = _locked_part(s, part_id)
        if found is None:
            return False
        part, plan = found
        if part.status in (_P.DONE, _P.FAILED, _P.CANCELLED):
            return False
        if run is None:
            if part.status != _P.QUEUED:
                return False  # another run has claimed it since: that run counts
            part.attempts += 1
        elif part.status != _P.RUNNING or part.attempts != run:
            return False  # requeued under this run, and claimed again: not this run's
        part.error = error[:2000]
        if plan.status != PlanStatus.RUNNING:
            part.status = _P.CANCELLED
            drop_inputs(s, plan.id)
            return False
        if final or part.attempts >= MAX_PART_RUNS:
            part.status = _P.FAILED
            total = s.scalar(select(func.count()).where(PlanPart.plan_id == plan.id)) or 0
            times = f"{part.attempts} times" if part.attempts > 1 else "once"
            _fail_plan(s, plan, f"{describe(part, total)} failed {times}: {error}")
            return True
        part.status = _P.QUEUED
        requeue(s, [part.id])
        return False


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
        _fail_plan(s, plan, f"{describe(part, total)}: {note}, {part.attempts} times")
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
    """Merge the done parts into the plan, and store it `ready`. The inputs are read in a
    short transaction, the merge and the must-do check run with no lock held, and the plan
    is stored under the day's lock and the plan's (as `run_plan` stores its solve), after
    checking it is still running on the same parts. None when it is not (another run
    assembled it, or it failed). An error fails the plan."""
    from dispatch.plans import displaced_by_must_do, lock_plan, store_ready

    try:
        with sessions.begin() as s:
            plan = existing(s, RoutePlan, plan_id)  # plans are never deleted
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
            answers: list[tuple[tuple[Route, ...], tuple[Unassigned, ...], dict[str, object]]] = []
            for p in parts:
                assert p.result is not None  # checked above
                routes, left = routes_from_wire(p.result)
                answers.append((routes, left, dict(p.result.get("stats") or {})))
            # Only each part's size and places: its matrix is not read again.
            shapes = [PartShape(p.crews, p.jobs, list(p.places)) for p in parts]
            part_ids = [p.id for p in parts]
            orphans = [Unassigned(j, r) for j, r in row.context["orphans"]]
            found = int(row.context["found"])
            # The solve's time, as a whole day's: from the parts' storing (after the build).
            wall = (db_now(s) - min(p.created_at for p in parts)).total_seconds()
            day = plan_date or plan.plan_date
            s.expunge_all()  # built's rows are stored detached, as run_plan stores its own
        result = merge(built.problem, shapes, orphans, found, answers, seconds=wall)
        displaced = displaced_by_must_do(built, day, result)
        with sessions.begin() as s:
            plan = existing(s, RoutePlan, plan_id)
            lock_plan(s, plan)
            now_ids = s.scalars(
                select(PlanPart.id)
                .where(PlanPart.plan_id == plan.id, PlanPart.status == _P.DONE)
                .order_by(PlanPart.position)
            ).all()
            if plan.status != PlanStatus.RUNNING or list(now_ids) != part_ids:
                return None  # assembled by another run meanwhile, failed, or built again
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
            drop_inputs(s, plan.id)
            return plan
    except Exception as exc:
        with sessions.begin() as s:
            plan = existing(s, RoutePlan, plan_id, with_for_update=True)
            if RoutePlanLifecycle.can(plan.status, PlanStatus.FAILED):
                _fail_plan(s, plan, f"assembling the parts failed: {type(exc).__name__}: {exc}")
        raise


def run_part(
    sessions: sessionmaker[Session],
    part_id: int,
    *,
    travel: TravelTimes,
    requeue: Defer,
    solve: Callable[[Problem, SolveParams], tuple[Result, int]] = solve_in_own_process,
) -> RoutePlan | None:
    """A part's job: claim, solve (`solve`: in a process of its own, which also says its
    peak memory in MB), store; and, when it was the last part, assemble the plan (which is
    returned then). Whatever raises before the part is stored, its claim included, is
    counted against the part (`fail_part`: the next run queued with `requeue`, or the plan
    failed), and raised again for the job's own record."""
    work: PartWork | None = None
    try:
        work = claim_part(sessions, part_id)
        if work is None:
            # Done, failed, cancelled or gone; a plan whose assembler died is assembled here.
            plan_id = awaiting_assembly(sessions, part_id)
        else:
            problem = work.problem()
            result, solver_mb = solve(
                problem, SolveParams(time_limit_s=work.time_limit_s, workers=1)
            )
            stats = {
                **{
                    k: v for k, v in result.stats.items() if isinstance(v, int | float | str | bool)
                },
                "solver_rss_mb": solver_mb,
                "worker_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            }
            plan_id = finish_part(sessions, part_id, result, stats=stats)
    except Exception as exc:
        final = isinstance(exc, WireError)  # input this release cannot read: no run will
        error = f"stored by another release ({exc})" if final else f"{type(exc).__name__}: {exc}"
        run = work.run if work is not None else None
        if fail_part(sessions, part_id, error, run=run, requeue=requeue, final=final):
            log.warning("plan failed: part %s failed its last run: %s", part_id, error)
        raise
    if plan_id is None:
        return None
    return assemble(sessions, plan_id, travel=travel)
