"""The status vocabulary (`core.status`) against the database it describes: every status a
CHECK constraint of the migrated schema allows has its enum member, every request status
has a resident's wording and an Open311 and FixMyStreet status, and each named group is
made of its own entity's statuses."""

from __future__ import annotations

import re
from enum import StrEnum

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from core import status
from core.status import (
    REQUEST_CLOSED_STATUSES,
    REQUEST_OPEN_STATUSES,
    WORDING,
    CompletionOutcome,
    PlanStatus,
    RequestStatus,
    Verdict,
    WorkOrderStatus,
)

# (table, CHECK constraint's column) → the enum whose values it must allow, no more, no less.
CHECKED: dict[tuple[str, str], type[StrEnum]] = {
    ("service_requests", "detailed_status"): RequestStatus,
    ("work_orders", "status"): WorkOrderStatus,
    ("route_plans", "status"): PlanStatus,
    ("completions", "verdict"): Verdict,
    ("completions", "outcome"): CompletionOutcome,
}

# FixMyStreet's Open311 client (perllib/Open311/GetServiceRequestUpdates.pm with extended
# statuses) knows these; anything else it would not map.
FIXMYSTREET_STATUSES = {
    "OPEN",
    "CLOSED",
    "FIXED",
    "IN_PROGRESS",
    "ACTION_SCHEDULED",
    "INVESTIGATING",
    "DUPLICATE",
    "NOT_COUNCILS_RESPONSIBILITY",
    "NO_FURTHER_ACTION",
    "INTERNAL_REFERRAL",
    "REOPEN",
}


def _allowed_by_check(db: Session, table: str, column: str) -> set[str]:
    """The values the migrated database's CHECK constraint on table.column lists."""
    definitions = db.scalars(
        text(
            "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c "
            "JOIN pg_class t ON t.oid = c.conrelid "
            "WHERE t.relname = :table AND c.contype = 'c'"
        ),
        {"table": table},
    ).all()
    # PostgreSQL shows `col IN ('a', 'b')` as `((col)::text = ANY ((ARRAY['a'::character
    # varying, ...])::text[]))`.
    mine = [d for d in definitions if re.match(rf"CHECK \(+{column}\)::text = ANY", d)]
    assert len(mine) == 1, definitions
    return set(re.findall(r"'([a-z_]+)'", mine[0]))


@pytest.mark.parametrize(("table", "column"), list(CHECKED))
def test_every_status_the_database_allows_is_a_member_of_its_enum(
    db: Session, table: str, column: str
) -> None:
    enum = CHECKED[(table, column)]
    assert _allowed_by_check(db, table, column) == {m.value for m in enum}


def test_every_request_status_has_a_residents_wording_and_open311_statuses() -> None:
    assert set(WORDING) == set(RequestStatus)
    for member, wording in WORDING.items():
        assert wording.status == member
        assert wording.words and wording.words[0].isupper(), member
        assert wording.fixmystreet in FIXMYSTREET_STATUSES, member
        assert wording.open311 == ("closed" if member in REQUEST_CLOSED_STATUSES else "open")
    # FixMyStreet must never read a closing that is not a fix as FIXED.
    assert [s for s, w in WORDING.items() if w.fixmystreet == "FIXED"] == [RequestStatus.FIXED]
    assert {WORDING[s].fixmystreet for s in REQUEST_OPEN_STATUSES} <= {
        "OPEN",
        "ACTION_SCHEDULED",
        "IN_PROGRESS",
    }


def test_every_closing_outcome_has_a_public_note() -> None:
    """What a closed request's status_notes say when no one wrote their own."""
    for outcome in (*status.CLOSE_OUTCOMES, RequestStatus.FIXED, RequestStatus.CANCELLED):
        assert status.note_for(outcome).endswith("."), outcome
    with pytest.raises(KeyError):
        status.note_for(RequestStatus.REOPENED)  # always says who reopened it


def test_open_and_closed_split_the_request_statuses() -> None:
    assert set(REQUEST_OPEN_STATUSES) | set(REQUEST_CLOSED_STATUSES) == set(RequestStatus)
    assert not set(REQUEST_OPEN_STATUSES) & set(REQUEST_CLOSED_STATUSES)
    assert tuple(RequestStatus) == status.REQUEST_STATUSES


# Each named group, and the entity its statuses belong to.
GROUPS: dict[str, type[StrEnum]] = {
    "REQUEST_OPEN_STATUSES": RequestStatus,
    "REQUEST_CLOSED_STATUSES": RequestStatus,
    "REQUEST_WORKING": RequestStatus,
    "REQUEST_OTHER_OUTCOMES": RequestStatus,
    "CLOSE_OUTCOMES": RequestStatus,
    "PLANNABLE": WorkOrderStatus,
    "ON_A_ROUTE": WorkOrderStatus,
    "COMPLETABLE": WorkOrderStatus,
    "NOT_REACHED": WorkOrderStatus,
    "UNDER_WAY": WorkOrderStatus,
    "CREW_STEPS": WorkOrderStatus,
    "VISITED": WorkOrderStatus,
    "SHOWN_ON_ROUTE": WorkOrderStatus,
    "JOINABLE": WorkOrderStatus,
    "DONE": WorkOrderStatus,
    "CLOSABLE_WITHOUT_COMPLETION": WorkOrderStatus,
    "CALLED_OFF": WorkOrderStatus,
    "SETTLED": WorkOrderStatus,
    "NOT_SET_BY_STAFF": WorkOrderStatus,
    "PROVEN": Verdict,
    "UNPROVEN": Verdict,
    "PLAN_SOLVING": PlanStatus,
    "PLAN_CURRENT": PlanStatus,
    "PLAN_PUBLISHED_OR_SUPERSEDED": PlanStatus,
}


@pytest.mark.parametrize("name", list(GROUPS))
def test_a_group_is_made_of_its_own_entitys_statuses(name: str) -> None:
    group = getattr(status, name)
    assert group, name
    assert all(isinstance(member, GROUPS[name]) for member in group), group
    assert len(set(group)) == len(group), group


def test_groups_that_must_not_overlap_do_not() -> None:
    # A work order a new report can join is one no crew has finished or the office closed.
    assert not set(status.JOINABLE) & set(status.DONE)
    assert set(status.JOINABLE) | set(status.DONE) == set(WorkOrderStatus)
    # Closing without a completion is for work no crew has claimed as done.
    assert not set(status.CLOSABLE_WITHOUT_COMPLETION) & {
        WorkOrderStatus.ON_SITE,
        WorkOrderStatus.COMPLETED,
        *status.DONE,
    }
    assert not set(status.PROVEN) & set(status.UNPROVEN)
    assert set(status.PROVEN) | set(status.UNPROVEN) == set(Verdict)
    assert RequestStatus.FIXED not in status.CLOSE_OUTCOMES  # fixed needs proof


def test_a_member_is_its_plain_value() -> None:
    """What lets JSON, SQL and comparisons with a column's value stay as they were."""
    stored: str = "in_progress"  # as a column's value reads
    assert stored == RequestStatus.IN_PROGRESS and hash(stored) == hash(RequestStatus.IN_PROGRESS)
    assert f"{WorkOrderStatus.EN_ROUTE}" == str(WorkOrderStatus.EN_ROUTE) == "en_route"
    assert "on_site" in status.ON_A_ROUTE
    assert status.words_for("not_a_status") == "not_a_status"
    assert status.words_for("acknowledged") == "Accepted, waiting to be planned"


def test_sql_list_spells_a_group_and_refuses_anything_but_a_status_word() -> None:
    assert status.sql_list(status.UNPROVEN) == "'needs_review', 'rejected'"
    with pytest.raises(ValueError, match="not a status word"):
        status.sql_list(["fixed', 'x"])
