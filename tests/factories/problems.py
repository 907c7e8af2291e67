"""Small hand-checkable dispatch instances on a straight road: location i sits at
x = XS[i] km, driving 1 km takes 60 s, so every number in the tests can be checked by hand."""

from __future__ import annotations

from dispatch.model import Crew, Job, Matrix, Problem, TimeWindow

H = 3600
# location 0 is the depot
XS = [0, 1, 2, 3, 4, 5, 10, 20, 30, 60]


def line_matrix(xs: list[int] = XS) -> Matrix:
    dur = [[abs(a - b) * 60 for b in xs] for a in xs]
    dist = [[abs(a - b) * 1000 for b in xs] for a in xs]
    return Matrix(dur, dist)


def crew(cid: str = "c1", **kw: object) -> Crew:
    base: dict[str, object] = dict(id=cid, start=0, end=0, shift=TimeWindow(8 * H, 16 * H))
    base.update(kw)
    return Crew(**base)  # type: ignore[arg-type]


def job(jid: str, loc: int, **kw: object) -> Job:
    base: dict[str, object] = dict(id=jid, location=loc, service=600)
    base.update(kw)
    return Job(**base)  # type: ignore[arg-type]


def problem(crews: list[Crew], jobs: list[Job], **kw: object) -> Problem:
    return Problem(matrix=line_matrix(), crews=tuple(crews), jobs=tuple(jobs), **kw)  # type: ignore[arg-type]
