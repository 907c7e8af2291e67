"""The solver's settings, and a worker's plan in the form that crosses process boundaries."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SolveParams:
    """Search settings. `seed` seeds the LNS (worker k uses seed * 7919 + k). Searches stop
    on time, not on iteration counts, so only instances small enough to converge within
    the limit (the tests') give the same plan on every run."""

    time_limit_s: float = 10.0
    workers: int = 1
    use_vroom: bool = True
    seed: int = 0
    log_search: bool = False
    vroom_share: float = 0.7  # cap on VROOM's first construction (it usually ends sooner)
    vroom_level: int | None = None  # its exploration level; None: 5 up to 300 jobs, then lower
    gls_lambdas: tuple[float, ...] = (0.1, 0.3)  # GLS lambda per worker
    first_solution: str = "PARALLEL_CHEAPEST_INSERTION"
    # VROOM-driven LNS before OR-Tools; OR-Tools keeps this share of what is left.
    lns: bool = True
    ortools_share: float = 0.2
    lns_threshold: float = 0.005
    lns_ops: tuple[str, ...] = (
        "pair",
        "split",
        "cluster",
        "string",
    )  # ruins to pick from ("random", "route" too)
    lns_ruin: float = 0.3  # largest ruin, as a share of the free jobs (at most 40)


@dataclass(slots=True)
class WorkerPlan:
    """One search worker's plan as OR-Tools left it, picklable so that a second process can
    send it back: per crew its jobs with their service starts, its departure and return,
    its breaks' starts; and how the search went."""

    routes: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # crew -> [(job, start)]
    depart: dict[str, int] = field(default_factory=dict)
    arrive: dict[str, int] = field(default_factory=dict)
    breaks: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    # The routes' cost as `to_result` times them (`search.honest_score`), and OR-Tools' own.
    objective: int | None = None
    ortools_objective: int | None = None
    start_from: str = ""
    status: str = ""
    seconds: float = 0.0
    lam: float = 0.0
    lns_iterations: int = 0
    lns_improvements: int = 0
    lns_objective: int | None = None
