"""Migration 0016: the users table takes call-takers, and a downgrade never drops one silently."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import text

from api.cli import alembic_config
from core.db import make_engine
from tests.databases import scratch_database

_INSERT = text(
    "INSERT INTO users (email, name, role, password_hash) VALUES (:e, 'Agent', 'call_taker', 'x')"
)


def test_call_taker_role_is_refused_before_0016_and_taken_after(database_url: str) -> None:
    with scratch_database(database_url) as url:
        cfg = alembic_config(url)
        command.upgrade(cfg, "0015")
        eng = make_engine(url)
        try:
            with pytest.raises(sa.exc.IntegrityError, match="ck_users_role"), eng.begin() as conn:
                conn.execute(_INSERT, {"e": "early@example.org"})
            command.upgrade(cfg, "0016")
            with eng.begin() as conn:
                conn.execute(_INSERT, {"e": "agent@example.org"})
                with (
                    pytest.raises(sa.exc.IntegrityError, match="ck_users_role"),
                    conn.begin_nested(),
                ):
                    conn.execute(
                        text(
                            "INSERT INTO users (email, name, role, password_hash) "
                            "VALUES ('x@example.org', 'X', 'intern', 'x')"
                        )
                    )

            # The downgrade stops rather than guess what a call-taker becomes ...
            with pytest.raises(RuntimeError, match="1 call-taker login"):
                command.downgrade(cfg, "0015")
            with eng.begin() as conn:
                assert conn.scalar(text("SELECT version_num FROM alembic_version")) == "0016"
                conn.execute(
                    text("UPDATE users SET role = 'dispatcher' WHERE email = 'agent@example.org'")
                )
            # ... and goes through once the city has re-roled them, back to the old check.
            command.downgrade(cfg, "0015")
            with pytest.raises(sa.exc.IntegrityError, match="ck_users_role"), eng.begin() as conn:
                conn.execute(_INSERT, {"e": "late@example.org"})
        finally:
            eng.dispose()
