"""core.db's row helpers: a row the code knows is there, and the rows a statement changed."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.db import existing, rowcount
from core.models import Crew, RouteStop
from tests import factories as f


def test_existing_answers_the_row_and_fails_loudly_when_it_is_gone(db: Session) -> None:
    crew = f.crew(db)
    db.flush()
    assert existing(db, Crew, crew.id) is crew
    assert existing(db, Crew, crew.id, with_for_update=True) is crew
    # Not a NotFound: nobody asked for this row by a key of their own, so no 404 may hide it.
    with pytest.raises(LookupError, match=f"Crew {crew.id + 1000} is gone"):
        existing(db, Crew, crew.id + 1000)


def test_rowcount_counts_the_rows_an_update_changed_and_refuses_a_select(db: Session) -> None:
    f.crew(db, "a")
    f.crew(db, "b")
    db.flush()
    assert rowcount(db.execute(update(Crew).where(Crew.code == "a").values(name="A"))) == 1
    assert rowcount(db.execute(update(Crew).values(name="all"))) == 2
    with pytest.raises(TypeError, match="no row count"):
        rowcount(db.execute(select(Crew)))


def test_a_break_stop_has_no_work_order_to_give() -> None:
    stop = RouteStop(id=7, kind="break")
    with pytest.raises(ValueError, match="stop 7 is a break, not a job"):
        _ = stop.job_order_id
    with pytest.raises(ValueError, match="stop 7 is a break, not a job"):
        _ = stop.job_order
