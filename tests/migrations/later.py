"""A migration after our head, written for one test into a folder of its own: the tests
of what every run does (its lock and timeouts) and of the rule for concurrent indexes
run it beside the real ones."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from api.cli import alembic_config

LATER = "9001"


def write_migration(folder: Path, upgrade: str, downgrade: str = "pass") -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    body = f'''
        """A migration for a test."""

        import sqlalchemy as sa
        from alembic import op

        import migrations.ops as ops

        revision = "{LATER}"
        down_revision = "{head}"
        branch_labels = None
        depends_on = None


        def upgrade() -> None:
            {upgrade}


        def downgrade() -> None:
            {downgrade}
    '''
    (folder / f"{LATER}_for_a_test.py").write_text(textwrap.dedent(body))


def config_with_later(url: str, folder: Path) -> Config:
    """The usual configuration, with `folder`'s migrations after ours."""
    cfg = alembic_config(url)
    versions = Path(cfg.get_main_option("script_location") or "") / "versions"
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", f"{versions}{os.pathsep}{folder}")
    return cfg
