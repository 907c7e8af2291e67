"""The solver package's parts on their own: the VROOM adapter's handling of what VROOM
refuses, the second search process's lifetime, and the one module that imports ortools."""

from __future__ import annotations

import ast
import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest

from dispatch.model import TimeWindow
from dispatch.solver import SolveParams, solve
from dispatch.solver import search as search_module
from dispatch.solver.vroom_adapter import _infeasible_seeds, vroom_run, vroom_spec
from tests.factories.problems import H, crew, job, problem

ROOT = Path(__file__).resolve().parents[2]


def test_ortools_is_imported_by_the_solvers_model_module_only() -> None:
    importers = []
    for path in sorted(ROOT.glob("**/*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in {".venv", "tests", "node_modules"} or ".git" in rel.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "ortools" or n.startswith("ortools.") for n in names):
                importers.append(str(rel))
    assert sorted(set(importers)) == ["dispatch/solver/ortools_model.py"]


def _two_crews_and_a_bad_seed():
    # c2's seeded route goes 60 km out to "far" first and so misses "early"'s window.
    p = problem(
        [crew("c1"), crew("c2")],
        [
            job("early", 1, windows=(TimeWindow(8 * H, 8 * H + 600),)),
            job("far", 9),
            job("near", 2),
        ],
    )
    spec = vroom_spec(p, [j.id for j in p.jobs], set())
    ids = {jid: k for k, jid in enumerate(spec.free)}
    seeds = {
        0: [("single", ids["near"])],
        1: [("single", ids["far"]), ("single", ids["early"])],
    }
    return p, spec, seeds


def test_vroom_plan_mode_names_the_seeded_route_that_breaks_a_window() -> None:
    p, spec, seeds = _two_crews_and_a_bad_seed()
    assert _infeasible_seeds(p, spec, seeds) == {1}


def test_a_refused_seed_is_dropped_and_vroom_places_its_jobs_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    p, spec, seeds = _two_crews_and_a_bad_seed()
    with caplog.at_level(logging.DEBUG, logger="dispatch.solver.vroom_adapter"):
        day = vroom_run(p, spec, 1, 1, None, seeds)
    assert day is not None
    assert day.unassigned == []
    assert sorted(j for r in day.routes.values() for j in r) == ["early", "far", "near"]
    (refusal,) = [r for r in caplog.records if "refused seeded routes" in r.getMessage()]
    assert refusal.levelno == logging.DEBUG and "vehicles [1]" in refusal.getMessage()


def test_a_vroom_failure_is_logged_with_its_context_and_gives_no_day(
    caplog: pytest.LogCaptureFixture,
) -> None:
    p, spec, _ = _two_crews_and_a_bad_seed()
    # A location outside the matrix: VROOM refuses the input.
    broken = replace(spec, jobs=[replace(spec.jobs[0], location=99), *spec.jobs[1:]])
    with caplog.at_level(logging.WARNING, logger="dispatch.solver.vroom_adapter"):
        assert vroom_run(p, broken, 1, 1, None) is None
    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING and warning.exc_info is not None
    assert "VROOM failed on 3 jobs and 2 vehicles (level 1)" in warning.getMessage()


def test_a_second_search_that_overruns_is_stopped_and_gives_no_plan(
    caplog: pytest.LogCaptureFixture,
) -> None:
    p = problem([crew(), crew("c2")], [job(str(k), k) for k in range(1, 9)])
    helper = search_module._Helper.start()
    assert helper is not None
    processes = list(helper._pool._processes.values())
    assert processes
    # Given a minute, asked back at once: it overruns and is killed.
    helper.search(p, [j.id for j in p.jobs], None, time.time() + 60, SolveParams(time_limit_s=60))
    with caplog.at_level(logging.WARNING, logger="dispatch.solver.search"):
        assert helper.plans(time.time() - 60) == []
    helper.close()
    for proc in processes:
        proc.join(timeout=30)  # killed: reaped as soon as the pool's thread sees it
    assert not any(proc.is_alive() for proc in processes)
    assert "overran its deadline" in caplog.text


def test_a_search_that_fails_here_stops_the_second_process(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[search_module._Helper] = []
    processes = []
    real_start = search_module._Helper.start

    def start() -> search_module._Helper | None:
        helper = real_start()
        assert helper is not None
        started.append(helper)
        processes.extend(helper._pool._processes.values())
        return helper

    def broken_lns(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the LNS broke in the caller's process")

    monkeypatch.setattr(search_module._Helper, "start", staticmethod(start))
    # Only this process's LNS breaks: the second process imports the real one.
    monkeypatch.setattr(search_module, "vroom_lns", broken_lns)
    p = problem([crew(), crew("c2")], [job(str(k), k % 9 + 1) for k in range(20)])
    with pytest.raises(RuntimeError, match="LNS broke"):
        solve(p, SolveParams(time_limit_s=60, workers=2))
    assert len(started) == 1 and processes
    for proc in processes:
        proc.join(timeout=30)  # killed at once: it had most of its minute left
    assert not any(proc.is_alive() for proc in processes)


def test_a_ruin_of_unassigned_jobs_only_with_no_idle_vehicle_asks_vroom_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dispatch.solver import lns
    from dispatch.solver.vroom_adapter import vroom_start

    # One crew with room for two of four jobs: its route is full, two jobs stay out.
    p = problem(
        [crew(capacity=(2,))],
        [job(str(k), k, demand=(1,)) for k in range(1, 5)],
        dimensions=("items",),
    )
    keep = [j.id for j in p.jobs]
    day = vroom_start(p, keep, set(), SolveParams(time_limit_s=1))
    assert day is not None and len(day.unassigned) == 2
    spec = vroom_spec(p, keep, set())
    routes = {v: [i for t, i in seq if t == "single"] for v, seq in day.steps.items()}

    def no_call(*args: object, **kwargs: object) -> None:
        raise AssertionError("VROOM was asked to repair a day with no vehicle to repair with")

    monkeypatch.setattr(lns, "vroom_run", no_call)
    assert lns._repair(p, spec, day, routes, lns.Ruin(set(day.unassigned)), 1.0) is None
