"""Route planning: the problem model, the solver and an independent validator."""

from dispatch.model import (
    Break,
    BreakPlacement,
    Crew,
    Job,
    Matrix,
    Objective,
    Problem,
    ProblemError,
    Result,
    Route,
    Stop,
    TimeWindow,
    Unassigned,
    replan,
)

__all__ = [
    "Break",
    "BreakPlacement",
    "Crew",
    "Job",
    "Matrix",
    "Objective",
    "Problem",
    "ProblemError",
    "Result",
    "Route",
    "Stop",
    "TimeWindow",
    "Unassigned",
    "replan",
]
