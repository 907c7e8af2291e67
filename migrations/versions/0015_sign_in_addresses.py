"""sign-in: the addresses each account signed in from lately

- `sign_in_addresses` keeps, per account (the same keyed hash of the e-mail as
  `sign_in_failures`) and client address, when it last signed in successfully. Such an
  address is exempt from the account's lock (failures from elsewhere set it) and counts
  only its own failures, so guesses from elsewhere cannot keep a crew out of its yard.
  Nothing to fill: addresses are learnt from the next sign-ins.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 23:40:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_in_addresses",
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column(
            "last_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("account", "address", name=op.f("pk_sign_in_addresses")),
    )
    op.create_index("ix_sign_in_addresses_last_at", "sign_in_addresses", ["last_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_sign_in_addresses_last_at", table_name="sign_in_addresses")
    op.drop_table("sign_in_addresses")
