"""GET /plans/{id} shows the solve's progress while it runs: the time used of the limit
rising, the best day found so far, and the last word once the plan is ready."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from dispatch.build import Scope
from dispatch.plans import PlanRequest, request_plan, run_plan
from tests import factories as f
from tests.factories.plans import DAY, TRAVEL, TZ, crew_on_shift

LIMIT_S = 3


def _day(s: Session) -> tuple[int, dict[str, str]]:
    depot = f.depot(s)
    f.service_type(s)
    crew_on_shift(s, "pothole-1", ["asphalt"], depot)
    crew_on_shift(s, "pothole-2", ["asphalt"], depot)
    for i in range(12):
        lon, lat = f.offset(f.LON, f.LAT, 300 * (i + 1) * (-1) ** i)
        f.report(s, "pothole", lon=lon, lat=lat)
    headers = f.token_for(s, f.user(s, "dispatcher@test", "dispatcher"))
    plan = request_plan(s, PlanRequest(DAY, Scope(), time_limit_s=LIMIT_S), actor=f.SYSTEM)
    s.commit()
    return plan.id, headers


def test_a_running_plan_shows_its_progress_rising_before_it_is_ready(
    committed: sessionmaker[Session], settings: Settings
) -> None:
    from api import create_app

    with committed() as s:
        plan_id, headers = _day(s)
    client = create_app(settings, sessions=committed).test_client()
    queued = client.get(f"/api/v1/plans/{plan_id}", headers=headers).get_json()
    assert queued["status"] == "queued" and queued["progress"] is None

    failure: list[BaseException] = []

    def solve() -> None:
        try:
            run_plan(committed, plan_id, travel=TRAVEL, tz=TZ, progress_every_s=0.25)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failure.append(exc)

    job = threading.Thread(target=solve)
    job.start()
    seen: list[dict[str, Any]] = []
    while job.is_alive():
        body = client.get(f"/api/v1/plans/{plan_id}", headers=headers).get_json()
        if body["status"] == "running" and body["progress"]:
            seen.append(body["progress"])
        time.sleep(0.2)
    job.join()
    assert not failure, failure

    solving = [p for p in seen if p["phase"] == "solving"]
    elapsed = [p["elapsed_s"] for p in solving]
    # Several readings while it ran, rising, within the limit.
    assert len(set(elapsed)) >= 3, seen
    assert elapsed == sorted(elapsed) and 0 <= elapsed[0] < elapsed[-1] <= LIMIT_S + 1
    assert all(p["time_limit_s"] == LIMIT_S for p in seen)
    # The best day so far shows before the plan is ready: VROOM's start at the latest.
    best = [p["best"] for p in solving if p["best"]]
    assert best and all(b["scheduled"] + b["unassigned"] == 12 and b["drive_s"] > 0 for b in best)

    done = client.get(f"/api/v1/plans/{plan_id}", headers=headers).get_json()
    assert done["status"] == "ready"
    assert done["progress"]["phase"] == "done"
    assert done["progress"]["best"] == {
        "scheduled": done["stats"]["scheduled"],
        "unassigned": 12 - done["stats"]["scheduled"],
        "drive_s": done["stats"]["drive_s"],
        "distance_m": done["stats"]["distance_m"],
    }
    assert elapsed[-1] <= done["progress"]["elapsed_s"] <= LIMIT_S + 2
