"""After-commit hooks and the crews' change feed wait for the real commit: a savepoint
released on the way does not run them, and one rolled back takes only its own."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core import crewfeed
from core.db import after_commit
from core.models import CrewChange
from tests import factories as f


def test_hooks_run_at_the_commit_not_at_a_savepoint(db: Session) -> None:
    ran: list[str] = []
    after_commit(db, lambda: ran.append("before"))
    with db.begin_nested():
        after_commit(db, lambda: ran.append("kept"))
    assert ran == []
    try:
        with db.begin_nested():
            after_commit(db, lambda: ran.append("rolled back"))
            raise RuntimeError("the savepoint fails")
    except RuntimeError:
        pass
    assert ran == []
    db.commit()
    assert ran == ["before", "kept"]


def test_a_rolled_back_transaction_runs_no_hook(db: Session) -> None:
    ran: list[str] = []
    f.crew(db, "rb-1")
    after_commit(db, lambda: ran.append("no"))
    db.rollback()
    db.commit()
    assert ran == []


def test_feed_changes_are_numbered_at_the_commit_whatever_savepoints_came_between(
    db: Session, sessions: sessionmaker
) -> None:
    crew = f.crew(db, "sp-1")
    db.commit()
    crewfeed.record(db, crew_id=crew.id, change="updated")
    with db.begin_nested():
        crewfeed.record(db, crew_id=crew.id, change="route")
    # Released, not committed: nothing numbered yet.
    assert db.scalars(select(CrewChange.seq).where(CrewChange.crew_id == crew.id)).all() == [
        None,
        None,
    ]
    try:
        with db.begin_nested():
            crewfeed.record(db, crew_id=crew.id, change="assigned")
            raise RuntimeError("the savepoint fails")
    except RuntimeError:
        pass
    db.commit()
    rows = db.execute(
        select(CrewChange.change, CrewChange.seq)
        .where(CrewChange.crew_id == crew.id)
        .order_by(CrewChange.seq)
    ).all()
    assert [r.change for r in rows] == ["updated", "route"] and None not in [r.seq for r in rows]
