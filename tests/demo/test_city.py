"""The demo city's seed, history included, holds the same invariants as real use."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Completion, ServiceRequest, WorkOrder
from core.storage import LocalStorage
from demo.city import DEMO_TZ, seed_demo_city
from demo.history import seed_history
from tests.factories import ANDORRA_PBF


def test_demo_history_closes_only_verified_work(db: Session, tmp_path) -> None:  # noqa: ANN001
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    summary = seed_demo_city(db, pbf=ANDORRA_PBF, n_requests=60, now=now)
    assert "jobs done" not in summary  # no photo storage given: no history
    assert db.scalar(select(func.count()).select_from(Completion)) == 0

    history = seed_history(
        db,
        LocalStorage(tmp_path / "media"),
        rng=random.Random(7),
        now=now,
        tz=DEMO_TZ,
        sample_rate=0.2,
    )
    db.flush()
    completions = db.scalars(select(Completion)).all()
    assert history.completed == len(completions) > 10
    by_verdict: dict[str, int] = {}
    for c in completions:
        by_verdict[c.verdict] = by_verdict.get(c.verdict, 0) + 1
    assert history.in_review == by_verdict.get("needs_review", 0) > 0
    assert history.reviewed == by_verdict.get("verified", 0) + by_verdict.get("rejected", 0)
    # Every closed request points at verified proof, and fixed ones show the after photo.
    for req in db.scalars(select(ServiceRequest).where(ServiceRequest.closed_at.is_not(None))):
        assert req.completion is not None and req.completion.verdict in (
            "auto_verified",
            "verified",
        ), req.public_id
        if req.detailed_status == "fixed":
            assert req.media_url.startswith("/media/public/photos/")
            assert (tmp_path / "media" / req.media_url.removeprefix("/media/")).exists()
    # Work waiting for a supervisor is not closed for the resident.
    for c in completions:
        if c.verdict == "needs_review":
            assert db.get(WorkOrder, c.work_order_id).status == "completed"
            assert all(r.closed_at is None for r in db.get(WorkOrder, c.work_order_id).requests)
    assert history.closed == db.scalar(
        select(func.count()).select_from(WorkOrder).where(WorkOrder.status == "verified")
    )


def test_the_demo_crews_are_on_shift_on_whatever_day_it_is_started(db: Session) -> None:
    from datetime import timedelta

    from core.models import Crew
    from core.shifts import shift_on

    now = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)  # a Sunday evening
    seed_demo_city(db, pbf=ANDORRA_PBF, n_requests=20, now=now, horizon_days=3)
    crews = db.scalars(select(Crew)).all()
    today = now.astimezone(DEMO_TZ).date()
    assert all(shift_on(db, c.id, today, DEMO_TZ) is not None for c in crews)
    # Started again a week later on a Monday morning, past the horizon it was seeded with.
    later = now + timedelta(days=7, hours=14)
    summary = seed_demo_city(db, pbf=ANDORRA_PBF, now=later, horizon_days=3)
    assert (
        summary == f"demo city already seeded; {3 * len(crews)} shifts made for the coming 3 days"
    )
    assert all(
        shift_on(db, c.id, later.astimezone(DEMO_TZ).date(), DEMO_TZ) is not None for c in crews
    )
