"""GPS ping ingest (core.field.ingest_positions: COPY into a staging table, then one
INSERT) on real PostGIS: what is stored, skipped and rejected, and what the crew's latest
position becomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from geoalchemy2.shape import to_shape
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.errors import ValidationFailed
from core.field import MAX_CLOCK_SKEW, MAX_PINGS_PER_BATCH, SANE_FLOOR, Ping, ingest_positions
from core.models import CrewPosition, PositionPing
from tests import factories as f

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _track(n: int, start: datetime, lat: float = f.LAT) -> list[Ping]:
    return [
        Ping(
            at=start + timedelta(seconds=k),
            lat=lat + k * 1e-5,
            lon=f.LON,
            accuracy_m=5.0,
            speed_mps=3.0,
            heading_deg=90.0,
        )
        for k in range(n)
    ]


def _stored(db: Session, crew_id: int) -> list[tuple[datetime, float, float | None]]:
    rows = db.execute(
        select(PositionPing.at, func.ST_Y(PositionPing.location), PositionPing.speed_mps)
        .where(PositionPing.crew_id == crew_id)
        .order_by(PositionPing.at)
    ).all()
    return [(at, lat, speed) for at, lat, speed in rows]


def _latest(db: Session, crew_id: int) -> tuple[datetime, float]:
    pos = db.scalars(select(CrewPosition).where(CrewPosition.crew_id == crew_id)).one()
    return pos.at, to_shape(pos.location).y


def test_a_batch_is_stored_whole_with_every_column(db: Session) -> None:
    crew = f.crew(db)
    track = _track(300, NOW - timedelta(hours=1))
    assert ingest_positions(db, crew.id, track, now=NOW) == (300, 0, 0)
    rows = _stored(db, crew.id)
    assert [r[0] for r in rows] == [p.at for p in track]
    assert rows[7][1] == pytest.approx(track[7].lat) and rows[7][2] == 3.0
    assert _latest(db, crew.id) == (track[-1].at, pytest.approx(track[-1].lat))


def test_duplicates_inside_one_batch_are_stored_once_and_counted(db: Session) -> None:
    crew = f.crew(db)
    track = _track(5, NOW - timedelta(minutes=10))
    again = Ping(at=track[2].at, lat=track[2].lat + 0.01, lon=f.LON)
    assert ingest_positions(db, crew.id, [*track, again, track[4]], now=NOW) == (5, 2, 0)
    assert len(_stored(db, crew.id)) == 5


def test_resent_pings_across_batches_are_skipped_and_the_crew_never_goes_back(
    db: Session,
) -> None:
    crew = f.crew(db)
    track = _track(100, NOW - timedelta(minutes=30))
    assert ingest_positions(db, crew.id, track[:60], now=NOW) == (60, 0, 0)
    # The phone lost the answer and resends, with the newer fixes it has since.
    assert ingest_positions(db, crew.id, track[40:], now=NOW) == (40, 20, 0)
    assert ingest_positions(db, crew.id, track, now=NOW) == (0, 100, 0)
    assert len(_stored(db, crew.id)) == 100
    assert _latest(db, crew.id)[0] == track[-1].at
    # A late, older batch is stored but does not move the crew back in time.
    older = _track(3, NOW - timedelta(hours=3), lat=f.LAT + 0.5)
    assert ingest_positions(db, crew.id, older, now=NOW) == (3, 0, 0)
    assert _latest(db, crew.id) == (track[-1].at, pytest.approx(track[-1].lat))


def test_implausible_pings_are_counted_and_the_rest_kept(db: Session) -> None:
    crew = f.crew(db)
    good = _track(4, NOW - timedelta(minutes=5))
    future = Ping(at=NOW + MAX_CLOCK_SKEW + timedelta(seconds=1), lat=f.LAT, lon=f.LON)
    reset = Ping(at=SANE_FLOOR - timedelta(days=1), lat=f.LAT, lon=f.LON)
    edge = Ping(at=NOW + MAX_CLOCK_SKEW, lat=f.LAT + 0.2, lon=f.LON)  # just believable
    batch = [future, good[0], reset, good[1], good[2], edge, good[3], future]
    assert ingest_positions(db, crew.id, batch, now=NOW) == (5, 0, 3)
    assert [r[0] for r in _stored(db, crew.id)] == [*(p.at for p in good), edge.at]
    assert _latest(db, crew.id)[0] == edge.at


def test_an_empty_or_all_rejected_batch_stores_nothing(db: Session) -> None:
    crew = f.crew(db)
    assert ingest_positions(db, crew.id, [], now=NOW) == (0, 0, 0)
    future = Ping(at=NOW + timedelta(hours=1), lat=f.LAT, lon=f.LON)
    assert ingest_positions(db, crew.id, [future, future], now=NOW) == (0, 0, 2)
    assert _stored(db, crew.id) == []
    assert db.scalar(select(func.count()).select_from(CrewPosition)) == 0


def test_a_batch_over_the_limit_is_refused_whole(db: Session) -> None:
    crew = f.crew(db)
    with pytest.raises(ValidationFailed) as err:
        ingest_positions(
            db, crew.id, _track(MAX_PINGS_PER_BATCH + 1, NOW - timedelta(hours=2)), now=NOW
        )
    assert err.value.field == "pings"
    assert _stored(db, crew.id) == []


def test_batches_of_two_crews_in_one_transaction_stay_apart(db: Session) -> None:
    """The staging table is the connection's: each batch empties it, so a second batch in
    the same transaction never stores the first one's rows again."""
    one, two = f.crew(db, "pothole-1"), f.crew(db, "pothole-2")
    assert ingest_positions(db, one.id, _track(10, NOW - timedelta(minutes=9)), now=NOW) == (
        10,
        0,
        0,
    )
    track = _track(4, NOW - timedelta(minutes=20), lat=f.LAT + 0.3)
    assert ingest_positions(db, two.id, track, now=NOW) == (4, 0, 0)
    assert len(_stored(db, one.id)) == 10
    assert [r[0] for r in _stored(db, two.id)] == [p.at for p in track]
    assert _latest(db, two.id) == (track[-1].at, pytest.approx(track[-1].lat))


def test_ingest_works_again_after_a_rollback_took_the_staging_table(db: Session) -> None:
    """A transaction that created the staging table and rolled back took it with it; the
    next batch on the same connection creates it again."""
    crew = f.crew(db)
    savepoint = db.begin_nested()
    ingest_positions(db, crew.id, _track(3, NOW - timedelta(minutes=3)), now=NOW)
    savepoint.rollback()
    assert _stored(db, crew.id) == []
    assert ingest_positions(db, crew.id, _track(3, NOW - timedelta(minutes=3)), now=NOW) == (
        3,
        0,
        0,
    )


def test_ingest_refuses_to_run_outside_a_transaction(engine: Engine) -> None:
    """In autocommit the COPY's own commit would empty the ON COMMIT DELETE ROWS staging
    table before the INSERT read it, and the whole batch would be counted as resent:
    ingest refuses instead of losing it."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        session = Session(bind=conn)
        with pytest.raises(RuntimeError, match="inside a transaction"):
            ingest_positions(session, 1, _track(3, NOW - timedelta(minutes=3)), now=NOW)
        session.close()
