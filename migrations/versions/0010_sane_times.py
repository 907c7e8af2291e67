"""sane client times: CHECK constraints on every column that holds a time a client's clock chose

A crew phone could store an event dated before year 1 in UTC (PostgreSQL keeps it as a
BC date); no read can turn such a value back into a Python datetime, so the Open311
lists, the status page, the staff views and the crew's own route answered 500 for
everyone. The API now refuses such times (422); these constraints make them impossible
whatever writes them: each column stays in [2000-01-01, 2200-01-01) UTC.

Rows already outside that window are repaired first, in this order, so that the
constraints can be added:

- `position_pings`: deleted (one GPS sample with an impossible date is evidence of
  nothing, and the track is not shown without a time).
- `crew_positions`: deleted (the crew's next ping or fix writes its position again).
- `completions.fix_time`, `completions.captured_at`: set to NULL (both are optional; the
  proof checks already stored in `checks` keep what was judged at the time).
- `status_events.at`: set to the row's entity's own time where it has one (the work
  order's `created_at`, the request's `requested_at`), else to the floor; the original
  value is kept at the end of the event's `note` ("[device time ... out of range]"), so
  the audit trail loses nothing.
- `crew_changes.at`: set to the row's `created_at` (when the server wrote it).
- `work_orders.updated_at`, `service_requests.updated_at`: set to the latest sane
  status-event time of the row, else its `created_at` / `requested_at`.

The downgrade drops the constraints only; repaired rows stay repaired.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 22:40:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FLOOR = "'2000-01-01T00:00:00+00:00'"
CEILING = "'2200-01-01T00:00:00+00:00'"

# (table, column): the constraint is named ck_<table>_<column>_sane, as core.models names it.
COLUMNS = [
    ("status_events", "at"),
    ("position_pings", "at"),
    ("crew_positions", "at"),
    ("crew_changes", "at"),
    ("completions", "fix_time"),
    ("completions", "captured_at"),
    ("work_orders", "updated_at"),
    ("service_requests", "updated_at"),
]


def _outside(column: str) -> str:
    return f"({column} < {FLOOR} OR {column} >= {CEILING})"


def upgrade() -> None:
    op.execute(f"DELETE FROM position_pings WHERE {_outside('at')}")
    op.execute(f"DELETE FROM crew_positions WHERE {_outside('at')}")
    op.execute(f"UPDATE completions SET fix_time = NULL WHERE {_outside('fix_time')}")
    op.execute(f"UPDATE completions SET captured_at = NULL WHERE {_outside('captured_at')}")
    op.execute(f"""
        UPDATE status_events e
        SET note = concat_ws(' ', e.note, '[device time ' || e.at::text || ' out of range]'),
            at = coalesce(
                CASE e.entity
                    WHEN 'work_order' THEN (SELECT w.created_at FROM work_orders w WHERE w.id = e.entity_id)
                    WHEN 'service_request' THEN (SELECT r.requested_at FROM service_requests r WHERE r.id = e.entity_id)
                END,
                {FLOOR}::timestamptz)
        WHERE {_outside("e.at")}
    """)
    op.execute(f"UPDATE crew_changes SET at = created_at WHERE {_outside('at')}")
    for table, entity, own in (
        ("work_orders", "work_order", "created_at"),
        ("service_requests", "service_request", "requested_at"),
    ):
        op.execute(f"""
            UPDATE {table} t
            SET updated_at = greatest(t.{own}, (SELECT max(e.at) FROM status_events e
                                                WHERE e.entity = '{entity}' AND e.entity_id = t.id))
            WHERE {_outside("t.updated_at")}
        """)
    for table, column in COLUMNS:
        op.create_check_constraint(
            op.f(f"ck_{table}_{column}_sane"),
            table,
            f"{column} >= {FLOOR} AND {column} < {CEILING}",
        )


def downgrade() -> None:
    for table, column in reversed(COLUMNS):
        op.drop_constraint(op.f(f"ck_{table}_{column}_sane"), table, type_="check")
