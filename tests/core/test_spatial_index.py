"""Metre-distance queries use the geography expression indexes on a city-sized table.

20,000 rows spread over Andorra, analysed, and the planner left to its own
choice: the plan of the very query intake runs must go through the index."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core.models import ServiceRequest, WorkOrder
from core.spatial import distance_metres, within_metres
from core.status import JOINABLE
from tests import factories as f


def _explain(db: Session, stmt) -> str:  # noqa: ANN001
    compiled = stmt.compile(db.get_bind(), compile_kwargs={"literal_binds": True})
    return "\n".join(row[0] for row in db.execute(text(f"EXPLAIN {compiled}")))


def _fill(db: Session, st_id: int) -> None:
    db.execute(
        text("""
        INSERT INTO work_orders (service_type_id, status, priority, due_at, skill, minutes_on_site, location)
        SELECT :st, 'new', 3, now(), 'asphalt', 30,
               ST_SetSRID(ST_MakePoint(1.42 + random() * 0.36, 42.43 + random() * 0.22), 4326)
        FROM generate_series(1, 20000)
    """),
        {"st": st_id},
    )
    db.execute(
        text("""
        INSERT INTO service_requests (public_id, token, service_type_id, location, requested_at)
        SELECT 'x' || g, 't' || g, :st,
               ST_SetSRID(ST_MakePoint(1.42 + random() * 0.36, 42.43 + random() * 0.22), 4326),
               now()
        FROM generate_series(1, 20000) g
    """),
        {"st": st_id},
    )
    db.execute(text("ANALYZE work_orders"))
    db.execute(text("ANALYZE service_requests"))


def test_duplicate_search_uses_work_order_geography_index(db: Session) -> None:
    st = f.service_type(db)
    _fill(db, st.id)
    # The statement find_joinable runs (minus FOR UPDATE, which EXPLAIN shows the same way).
    stmt = (
        select(WorkOrder.id)
        .where(
            WorkOrder.service_type_id == st.id,
            WorkOrder.status.in_(JOINABLE),
            within_metres(WorkOrder.location, f.LON, f.LAT, st.duplicate_radius_m),
        )
        .order_by(distance_metres(WorkOrder.location, f.LON, f.LAT))
        .limit(1)
    )
    plan = _explain(db, stmt)
    assert "ix_work_orders_location_geog" in plan, plan
    assert "Seq Scan" not in plan, plan


def test_request_radius_query_uses_request_geography_index(db: Session) -> None:
    st = f.service_type(db)
    _fill(db, st.id)
    plan = _explain(
        db,
        select(ServiceRequest.id).where(within_metres(ServiceRequest.location, f.LON, f.LAT, 100)),
    )
    assert "ix_service_requests_location_geog" in plan, plan
    assert "Seq Scan" not in plan, plan
