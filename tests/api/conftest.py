"""Fixtures shared by the /api/v1 tests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from core.field import Ping, ingest_positions
from core.workorders import change_status
from dispatch.plans import publish_plan, run_plan
from geo.travel import StraightLineProvider
from tests import factories as f
from tests.factories.completions import NOW
from tests.factories.plans import DAY, TZ


@pytest.fixture
def admin(db: Session) -> dict[str, str]:
    """Authorization headers of an admin user."""
    return f.token_for(db, f.user(db, "admin@example.org", "admin"))


@pytest.fixture
def job(db: Session) -> dict:
    """A work order dispatched to a crew an hour ago, with the crew's track up to the site
    (tests/factories/completions.py submits its completion)."""
    f.service_type(db, proof_max_distance_m=75)
    crew = f.crew(db)
    other = f.crew(db, "pothole-2")
    wo = f.report(db).work_order
    change_status(
        db, wo, "dispatched", actor=f.SYSTEM, crew_id=crew.id, at=NOW - timedelta(hours=1)
    )
    user = f.user(db, "pothole-1@test", "crew", crew=crew)
    # The crew's own track: driving up to the site over the last 20 minutes.
    ingest_positions(
        db,
        crew.id,
        [
            Ping(
                at=NOW - timedelta(minutes=20 - k),
                lat=f.LAT - 0.0002 * (20 - k),
                lon=f.LON,
                accuracy_m=8,
            )
            for k in range(20)
        ],
    )
    db.commit()
    return {
        "wo": wo,
        "crew": crew,
        "headers": f.token_for(db, user),
        "other": f.token_for(db, f.user(db, "pothole-2@test", "crew", crew=other)),
    }


@pytest.fixture
def published(db: Session, sessions: sessionmaker, day) -> dict:  # noqa: ANN001
    """`day`'s plan solved and published, with a crew user's token for each route."""
    from dispatch.build import Scope
    from dispatch.plans import PlanRequest, request_plan

    plan = request_plan(db, PlanRequest(DAY, Scope(), 2), actor=f.SYSTEM)
    db.commit()
    run_plan(sessions, plan.id, travel=StraightLineProvider(), tz=TZ)
    db.expire_all()
    plan = db.get(type(plan), plan.id)
    publish_plan(db, plan, actor=f.SYSTEM)
    db.commit()
    crews = {pr.crew.code: pr.crew for pr in plan.routes}
    tokens = {
        code: f.token_for(db, f.user(db, f"{code}@test", "crew", crew=c))
        for code, c in crews.items()
    }
    db.commit()
    return {"plan": plan, "crews": crews, "tokens": tokens}
