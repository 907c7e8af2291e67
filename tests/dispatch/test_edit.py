"""Re-timing a hand-edited route (hand-checkable: 1 km = 60 s, see conftest)."""

from __future__ import annotations

from dispatch.edit import time_route
from dispatch.model import Break, TimeWindow
from dispatch.validate import check_route
from tests.factories.problems import H, crew, job, problem


def test_times_and_lunch_land_where_a_dispatcher_expects() -> None:
    c = crew(breaks=(Break("lunch", 1800, TimeWindow(11 * H + 1800, 13 * H + 1800)),))
    jobs = [job(f"j{i}", i + 1, service=3600) for i in range(6)]
    p = problem([c], jobs)
    r = time_route(p, p.crews[0], [j.id for j in jobs])
    assert [s.start for s in r.stops[:4]] == [8 * H + 60, 9 * H + 120, 10 * H + 180, 11 * H + 240]
    (lunch,) = r.breaks
    # Arrives at j4 at 12:05 (after the window opened): lunch first, then the job.
    assert (lunch.start, lunch.end, lunch.after_stop) == (12 * H + 300, 12 * H + 2100, 3)
    assert r.stops[4].start == lunch.end
    assert r.arrive == r.stops[-1].end + 10 * 60 and r.distance == 20_000
    assert check_route(p, p.crews[0], r) == []


def test_an_order_that_misses_a_window_is_caught() -> None:
    c = crew()
    early = job("early", 6, service=600, windows=(TimeWindow(8 * H, 8 * H + 3000),))
    p = problem([c], [job("far", 8, service=3600), early])
    good = time_route(p, p.crews[0], ["early", "far"])
    assert check_route(p, p.crews[0], good) == []
    bad = time_route(p, p.crews[0], ["far", "early"])
    assert any("outside" in v for v in check_route(p, p.crews[0], bad))


def test_an_empty_route_takes_no_time() -> None:
    p = problem([crew()], [])
    r = time_route(p, p.crews[0], [])
    assert (r.stops, r.distance, r.arrive - r.depart) == ((), 0, 0)
