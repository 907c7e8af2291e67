"""users: call-takers, a role of their own

- `users.role` may be `call_taker`: the 311 agents who take residents' calls. They
  record requests, search addresses, see the open requests near a place and look a
  request up by its confirmation number; they do not plan, review, see reporters'
  contact details or administer (the API's role checks say so, not the table).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 01:10:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = ("crew", "dispatcher", "supervisor", "admin")
_NEW = (*_OLD, "call_taker")


def _role_check(values: tuple[str, ...]) -> None:
    name = op.f("ck_users_role")
    op.drop_constraint(name, "users", type_="check")
    op.create_check_constraint(name, "users", f"role IN ({', '.join(repr(v) for v in values)})")


def upgrade() -> None:
    _role_check(_NEW)


def downgrade() -> None:
    # A call-taker has no role to fall back to that would not give it more (or less) than
    # the city chose, and the audit trail points at the row, so it cannot be deleted:
    # the downgrade stops and says what to do instead of guessing.
    left = op.get_bind().scalar(text("SELECT count(*) FROM users WHERE role = 'call_taker'"))
    if left:
        raise RuntimeError(
            f"{left} call-taker login(s) exist; give them another role "
            "(streetloop users / PATCH /api/v1/users/<id>) before downgrading below 0016"
        )
    _role_check(_OLD)
