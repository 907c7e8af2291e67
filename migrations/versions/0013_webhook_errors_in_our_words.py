"""webhook errors in our own words: what targets answered is no longer kept

Up to 300 characters of a webhook target's reply, and the text of network errors, were
stored in `notifications.last_error`, which admins read; a URL pointed into the city's
network made that a map of it. Delivery now records a fixed vocabulary ("HTTP 503",
"timeout", "refused: private address", ...); this rewrites what earlier attempts left:

- `HTTP 500 from <url>: <reply>` keeps `HTTP 500`;
- `<url>: <error repr>` (a network error) becomes `connection failed`;
- `internal error: <repr>` becomes `internal error (see the worker's log)`;
- `the worker stopped during attempt N; before that: ...` keeps its first part.

Only webhook rows: an e-mail's errors come from the city's own mail server. Nothing to
undo: the downgrade leaves the rewritten texts as they are.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 22:40:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(r"""
        UPDATE notifications SET last_error = CASE
            WHEN last_error LIKE 'the worker stopped during attempt %; before that: %'
                THEN split_part(last_error, '; before that: ', 1)
            WHEN last_error ~ '^HTTP [0-9]{3} from ' THEN substring(last_error from '^HTTP [0-9]{3}')
            WHEN last_error LIKE 'internal error: %' THEN 'internal error (see the worker''s log)'
            WHEN last_error ~* '^https?://' THEN 'connection failed'
            ELSE last_error
        END
        WHERE channel = 'webhook' AND last_error IS NOT NULL
    """)


def downgrade() -> None:
    # The replies are gone on purpose; there is nothing to put back.
    pass
