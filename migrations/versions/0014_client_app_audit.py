"""client apps on the audit trail: API keys (active → revoked) and webhooks (active ⇄ inactive)

Creating and revoking an Open311 client app's key, and registering or switching off its
webhooks, are state changes like any other and now write their status events. Revoking a
key also switches its webhooks off: before, they stayed `active` in the admins' list
although the outbox no longer called them. This migration does the same for keys revoked
earlier, each with its event (actor `system`), so the list and the trail agree.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 23:05:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ENTITIES = (
    "service_request",
    "work_order",
    "route_plan",
    "completion",
    "user",
    "shift",
    "shift_pattern",
    "service_area",
    "crew",
)


def _entities(values: tuple[str, ...]) -> None:
    name = op.f("ck_status_events_entity")
    op.drop_constraint(name, "status_events", type_="check")
    op.create_check_constraint(
        name, "status_events", f"entity IN ({', '.join(repr(v) for v in values)})"
    )


def upgrade() -> None:
    _entities(_ENTITIES + ("api_key", "webhook"))
    op.execute("""
        WITH off AS (
            UPDATE webhooks w SET active = false
            FROM api_keys k
            WHERE k.id = w.api_key_id AND NOT k.active AND w.active
            RETURNING w.id
        )
        INSERT INTO status_events (entity, entity_id, from_status, to_status, actor, note)
        SELECT 'webhook', id, 'active', 'inactive', 'system', 'api key revoked (migration 0014)' FROM off
    """)


def downgrade() -> None:
    # The webhooks switched off stay off: their keys are revoked, so nothing calls them.
    op.execute("DELETE FROM status_events WHERE entity IN ('api_key', 'webhook')")
    _entities(_ENTITIES)
