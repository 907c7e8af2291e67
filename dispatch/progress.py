"""What a solve has found so far, for the dispatcher watching it run.

The solver calls `report(routes)` whenever it holds a better day than before (VROOM's
start, each improvement of the LNS walk, OR-Tools' new solutions). Who listens is set
with `listening(sink)` around the solve; with nobody listening `report` costs nothing,
so the solver's own tests and benchmarks run as before. A context variable rather than
an argument: the solve functions are handed around (`solve_fn`, `solve_split`) and their
signatures stay as they are. Child processes (the second search worker, the parts of a
split day) do not inherit it: the figures are those of the main search, which is also
the one that reports the first plan.

`Ticker` writes the latest figures, and the time used, to the plan's row every second
from a thread of its own, each write in its own short transaction: the solve itself
holds no transaction, and a slow database must never slow the search."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dispatch.model import Problem

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

Sink = Callable[[dict[str, int]], None]
_sink: ContextVar[Sink | None] = ContextVar("solve_progress_sink", default=None)


@contextmanager
def listening(sink: Sink) -> Iterator[None]:
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


def active() -> bool:
    """Whether anyone listens (so the solver skips the figures' arithmetic otherwise)."""
    return _sink.get() is not None


def figures(problem: Problem, routes: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """A candidate day's figures: jobs on routes, jobs left out, driving time and distance
    (start, jobs in order, end; the matrix's seconds and metres)."""
    m = problem.matrix
    where = {j.id: j.location for j in problem.jobs}
    drive = dist = scheduled = 0
    for c in problem.crews:
        seq = [where[j] for j in routes.get(c.id, ()) if j in where]
        if not seq:
            continue
        scheduled += len(seq)
        path = [c.start, *seq, c.end]
        for a, b in itertools.pairwise(path):
            drive += int(m.durations[a, b])
            dist += int(m.distances[a, b])
    return {
        "scheduled": scheduled,
        "unassigned": len(problem.jobs) - scheduled,
        "drive_s": drive,
        "distance_m": dist,
    }


def report(problem: Problem, routes: Mapping[str, Sequence[str]]) -> None:
    sink = _sink.get()
    if sink is None:
        return
    try:
        sink(figures(problem, routes))
    except Exception:  # a progress report must never cost the plan
        log.exception("solve progress report failed")


class Ticker:
    """Writes `route_plans.progress` every `every_s` while the solve runs.

    progress = {"phase", "elapsed_s", "time_limit_s", "best": figures | None, "updated_at"}.
    `elapsed_s` counts from the start of the search (building the problem, the travel
    matrix above all, is phase "building" and is not counted against the limit, as the
    solver does not count it either)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        plan_id: int,
        time_limit_s: int,
        every_s: float | None = 1.0,
    ) -> None:
        # every_s=None: no thread, the row is written at the phase changes only (tests whose
        # sessions share one connection cannot write from a second thread).
        self.sessions, self.plan_id, self.time_limit_s, self.every_s = (
            sessions,
            plan_id,
            time_limit_s,
            every_s,
        )
        self.phase = "building"
        self.best: dict[str, int] | None = None
        self._started: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"plan-{plan_id}-progress", daemon=True
        )

    def __call__(self, best: dict[str, int]) -> None:
        # Called from the solver's thread; one assignment, read whole by the ticker's thread.
        self.best = best

    def solving(self) -> None:
        self._started = time.monotonic()
        self.phase = "solving"
        self.write()

    def elapsed(self) -> float:
        return 0.0 if self._started is None else round(time.monotonic() - self._started, 1)

    def snapshot(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "elapsed_s": self.elapsed(),
            "time_limit_s": self.time_limit_s,
            "best": self.best,
            "updated_at": datetime.now(UTC).isoformat(),
        }

    def write(self) -> None:
        """One short transaction; only while the plan is still running (a plan marked failed
        by a sweep, or already stored, is left as it is)."""
        # Imported here: the solver imports this module, and its search processes need no ORM.
        from sqlalchemy import update

        from core.models import RoutePlan

        try:
            with self.sessions.begin() as s:
                s.execute(
                    update(RoutePlan)
                    .where(RoutePlan.id == self.plan_id, RoutePlan.status == "running")
                    .values(progress=self.snapshot())
                )
        except Exception:
            log.exception("writing the progress of plan %s failed", self.plan_id)

    def _run(self) -> None:
        assert self.every_s is not None
        while not self._stop.wait(self.every_s):
            self.write()

    def __enter__(self) -> Ticker:
        self.write()
        if self.every_s is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
