"""Problems and answers in a form that is stored and read back by another process, on
another machine: JSON for the dataclasses, the travel matrix as little-endian integer
bytes (zlib-compressed). Never a pickle: what is read from the database is data, and
reading it runs no code.

The form is versioned (`FORMAT`): a worker that meets a form it does not know refuses it
with `WireError` instead of guessing, and the plan fails at once saying so (never a wrong
answer). Two releases can therefore share a queue only safely, not usefully: upgrade every
worker before turning split days on (STREETLOOP_PLAN_SPLIT_MIN_JOBS), and before a release
that bumps `FORMAT`; a worker that predates `solve_plan_part` fails its jobs outright, and
the plan waits for `fail_stale_plans`. Bump `FORMAT` with any change to what is written
(tests/dispatch/test_plan_parts.py compares the dataclasses' fields with it)."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from dispatch.model import (
    Break,
    BreakPlacement,
    Crew,
    Job,
    Matrix,
    Problem,
    Route,
    Stop,
    TimeWindow,
    Unassigned,
)

FORMAT = 1


class WireError(ValueError):
    """Stored data this release cannot read (another format, or damaged)."""


def _window(w: TimeWindow) -> list[int]:
    return [w.start, w.end]


def _tw(v: list[int]) -> TimeWindow:
    return TimeWindow(int(v[0]), int(v[1]))


def _crew(c: Crew) -> dict[str, Any]:
    return {
        "id": c.id,
        "start": c.start,
        "end": c.end,
        "shift": _window(c.shift),
        "breaks": [
            {"id": b.id, "duration": b.duration, "window": _window(b.window)} for b in c.breaks
        ],
        "skills": sorted(c.skills),
        "capacity": list(c.capacity),
        "max_duration": c.max_duration,
        "cost_per_km": c.cost_per_km,
        "cost_per_hour": c.cost_per_hour,
        "locked_first": list(c.locked_first),
        "pinned": list(c.pinned),
    }


def _crew_from(d: dict[str, Any]) -> Crew:
    return Crew(
        id=d["id"],
        start=int(d["start"]),
        end=int(d["end"]),
        shift=_tw(d["shift"]),
        breaks=tuple(Break(b["id"], int(b["duration"]), _tw(b["window"])) for b in d["breaks"]),
        skills=frozenset(d["skills"]),
        capacity=tuple(d["capacity"]),
        max_duration=d["max_duration"],
        cost_per_km=int(d["cost_per_km"]),
        cost_per_hour=int(d["cost_per_hour"]),
        locked_first=tuple(d["locked_first"]),
        pinned=tuple(d["pinned"]),
    )


def _job(j: Job) -> dict[str, Any]:
    return {
        "id": j.id,
        "location": j.location,
        "service": j.service,
        "windows": [_window(w) for w in j.windows],
        "skills": sorted(j.skills),
        "demand": list(j.demand),
        "priority": j.priority,
        "due": j.due,
        "required": j.required,
        "crews": sorted(j.crews),
    }


def _job_from(d: dict[str, Any]) -> Job:
    return Job(
        id=d["id"],
        location=int(d["location"]),
        service=int(d["service"]),
        windows=tuple(_tw(w) for w in d["windows"]),
        skills=frozenset(d["skills"]),
        demand=tuple(d["demand"]),
        priority=int(d["priority"]),
        due=d["due"],
        required=bool(d["required"]),
        crews=frozenset(d["crews"]),
    )


def _narrow(a: np.ndarray) -> tuple[str, np.ndarray]:
    """int32 when every value fits (seconds and metres of a city always do): half the bytes."""
    if a.size == 0 or int(a.max()) < 2**31:
        return "<i4", a.astype("<i4")
    return "<i8", a.astype("<i8")


def problem_to_wire(problem: Problem) -> tuple[dict[str, Any], bytes]:
    """The problem as (JSON-able dict, matrix bytes)."""
    m = problem.matrix
    dur_type, dur = _narrow(m.durations)
    dist_type, dist = _narrow(m.distances)
    blob = zlib.compress(dur.tobytes() + dist.tobytes(), 1)
    doc = {
        "format": FORMAT,
        "matrix": {
            "size": m.size,
            "durations": dur_type,
            "distances": dist_type,
            "codec": "zlib",
            "provider": m.provider,
            "fallback_pairs": m.fallback_pairs,
            "off_network": list(m.off_network),
        },
        "crews": [_crew(c) for c in problem.crews],
        "jobs": [_job(j) for j in problem.jobs],
        "dimensions": list(problem.dimensions),
        "now": problem.now,
        # Penalties travel as text: they are int64 and JSON readers may hold only doubles.
        "penalties": {k: str(v) for k, v in problem.penalties.items()},
    }
    return doc, blob


def problem_from_wire(doc: dict[str, Any], blob: bytes) -> Problem:
    if doc.get("format") != FORMAT:
        raise WireError(
            f"stored problem has format {doc.get('format')!r}; this release reads {FORMAT}"
        )
    meta = doc["matrix"]
    if (
        meta.get("codec") != "zlib"
        or meta["durations"] not in ("<i4", "<i8")
        or meta["distances"] not in ("<i4", "<i8")
    ):
        raise WireError(f"stored matrix has an unknown encoding: {meta!r}")
    n = int(meta["size"])
    dur_bytes = n * n * np.dtype(meta["durations"]).itemsize
    dist_bytes = n * n * np.dtype(meta["distances"]).itemsize
    try:
        # At most one byte more than the matrix says it holds: damaged or hostile data
        # cannot inflate into more memory than the matrix itself.
        raw = zlib.decompressobj().decompress(blob, dur_bytes + dist_bytes + 1)
    except zlib.error as exc:
        raise WireError(f"stored matrix is damaged: {exc}") from None
    if len(raw) != dur_bytes + dist_bytes:
        raise WireError(
            f"stored matrix has {len(raw)} bytes, not the {dur_bytes + dist_bytes} of {n} places"
        )
    dur = np.frombuffer(raw, dtype=meta["durations"], count=n * n).reshape(n, n)
    dist = np.frombuffer(raw, dtype=meta["distances"], offset=dur_bytes).reshape(n, n)
    matrix = Matrix(
        dur,
        dist,
        provider=meta["provider"],
        fallback_pairs=int(meta["fallback_pairs"]),
        off_network=tuple(int(i) for i in meta["off_network"]),
    )
    return Problem(
        matrix=matrix,
        crews=tuple(_crew_from(c) for c in doc["crews"]),
        jobs=tuple(_job_from(j) for j in doc["jobs"]),
        dimensions=tuple(doc["dimensions"]),
        now=int(doc["now"]),
        penalties={k: int(v) for k, v in doc["penalties"].items()},
    )


def routes_to_wire(
    routes: tuple[Route, ...] | list[Route], unassigned: tuple[Unassigned, ...] | list[Unassigned]
) -> dict[str, Any]:
    """A solved part's answer (in the part's own location indices)."""
    return {
        "format": FORMAT,
        "routes": [
            {
                "crew_id": r.crew_id,
                "depart": r.depart,
                "arrive": r.arrive,
                "distance": r.distance,
                "duration": r.duration,
                "stops": [[s.job_id, s.location, s.arrival, s.start, s.end] for s in r.stops],
                "breaks": [[b.break_id, b.start, b.end, b.after_stop] for b in r.breaks],
            }
            for r in routes
        ],
        "unassigned": [[u.job_id, u.reason] for u in unassigned],
    }


def routes_from_wire(doc: dict[str, Any]) -> tuple[tuple[Route, ...], tuple[Unassigned, ...]]:
    if doc.get("format") != FORMAT:
        raise WireError(
            f"stored result has format {doc.get('format')!r}; this release reads {FORMAT}"
        )
    routes = tuple(
        Route(
            crew_id=r["crew_id"],
            depart=int(r["depart"]),
            stops=tuple(Stop(s[0], int(s[1]), int(s[2]), int(s[3]), int(s[4])) for s in r["stops"]),
            breaks=tuple(
                BreakPlacement(b[0], int(b[1]), int(b[2]), int(b[3])) for b in r["breaks"]
            ),
            arrive=int(r["arrive"]),
            distance=int(r["distance"]),
            duration=int(r["duration"]),
        )
        for r in doc["routes"]
    )
    unassigned = tuple(Unassigned(u[0], u[1]) for u in doc["unassigned"])
    return routes, unassigned
