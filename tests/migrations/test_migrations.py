"""The migrations build exactly the schema the models describe, and run both ways."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, inspect, text

from api.cli import alembic_config
from core.db import Base, make_engine
from migrations.schema_filter import include_object
from tests.databases import scratch_database


def _drift(conn: Connection) -> list[Any]:
    """What autogenerate would write to make the schema match the models: the same
    comparison as migrations/env.py's (`streetloop db check`), server defaults included."""
    ctx = MigrationContext.configure(
        conn,
        opts={
            "include_object": include_object,
            "compare_type": True,
            "compare_server_default": True,
            "target_metadata": Base.metadata,
        },
    )
    return list(compare_metadata(ctx, Base.metadata))


def test_migrated_schema_matches_models(engine: Engine) -> None:
    with engine.connect() as conn:
        assert _drift(conn) == []


def test_a_server_default_the_models_do_not_have_is_drift(connection: Connection) -> None:
    connection.execute(text("ALTER TABLE crews ALTER COLUMN active SET DEFAULT false"))
    [[change]] = _drift(connection)
    assert change[:4] == ("modify_default", None, "crews", "active")


def test_every_model_table_and_procrastinate_schema_exist(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert {"procrastinate_jobs", "procrastinate_events", "procrastinate_workers"} <= tables


def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    with scratch_database(database_url) as url:
        cfg = alembic_config(url)
        command.upgrade(cfg, "head")
        command.downgrade(cfg, "base")
        eng = make_engine(url)
        with eng.connect() as conn:
            left = set(inspect(conn).get_table_names()) - {"spatial_ref_sys", "alembic_version"}
            procs = conn.scalar(
                text("SELECT count(*) FROM pg_proc WHERE proname LIKE 'procrastinate%'")
            )
        eng.dispose()
        assert left == set()
        assert procs == 0
        command.upgrade(cfg, "head")


def test_closing_the_loop_upgrade_counts_old_reopens_and_refuses_fixed_without_evidence(
    database_url: str,
) -> None:
    with scratch_database(database_url) as url:
        cfg = alembic_config(url)
        command.upgrade(cfg, "0004")
        eng = make_engine(url)
        with eng.begin() as conn:
            st = conn.scalar(
                text(
                    "INSERT INTO service_types (code, name, agency, sla_hours, skill, minutes_on_site) "
                    "VALUES ('pothole', 'Pothole', 'Roads', 72, 'asphalt', 30) RETURNING id"
                )
            )
            for i, status in enumerate(("reopened", "fixed")):
                rid = conn.scalar(
                    text(
                        "INSERT INTO service_requests (public_id, token, service_type_id, detailed_status) "
                        "VALUES (:p, :t, :st, :s) RETURNING id"
                    ),
                    {"p": f"R{i}", "t": f"t{i}", "st": st, "s": status},
                )
                for _ in range(2 if status == "reopened" else 0):
                    conn.execute(
                        text(
                            "INSERT INTO status_events (entity, entity_id, to_status, actor) "
                            "VALUES ('service_request', :id, 'reopened', 'test')"
                        ),
                        {"id": rid},
                    )
        with pytest.raises(
            RuntimeError, match="1 service requests are 'fixed' without a verified completion"
        ):
            command.upgrade(cfg, "head")
        with eng.begin() as conn:
            conn.execute(
                text(
                    "UPDATE service_requests SET detailed_status = 'no_action_needed' WHERE detailed_status = 'fixed'"
                )
            )
        command.upgrade(cfg, "head")
        with eng.connect() as conn:
            assert (
                conn.scalar(
                    text("SELECT reopen_count FROM service_requests WHERE public_id = 'R0'")
                )
                == 2
            )
        eng.dispose()


def test_webhook_errors_that_quote_a_target_are_rewritten_in_our_words(database_url: str) -> None:
    with scratch_database(database_url) as url:
        cfg = alembic_config(url)
        command.upgrade(cfg, "0009")
        eng = make_engine(url)
        old = {
            "HTTP 500 from http://10.0.0.5:8080/hook: <html>Jenkins 2.4 internal</html>": "HTTP 500",
            "HTTP 302 from https://app.example.org/hook": "HTTP 302",
            "http://10.0.0.5:5432/: ConnectionResetError(104, 'Connection reset by peer')": "connection failed",
            "internal error: BadStatusLine('SSH-2.0-OpenSSH_9.6 internal-db-01')": (
                "internal error (see the worker's log)"
            ),
            (
                "the worker stopped during attempt 3; before that: "
                "HTTP 503 from https://a.example.org/: busy"
            ): "the worker stopped during attempt 3",
            "webhook 7 was deactivated": "webhook 7 was deactivated",
        }
        with eng.begin() as conn:
            st = conn.scalar(
                text(
                    "INSERT INTO service_types (code, name, agency, sla_hours, skill, minutes_on_site) "
                    "VALUES ('pothole', 'Pothole', 'Roads', 72, 'asphalt', 30) RETURNING id"
                )
            )
            rid = conn.scalar(
                text(
                    "INSERT INTO service_requests (public_id, token, service_type_id) "
                    "VALUES ('R1', 't1', :st) RETURNING id"
                ),
                {"st": st},
            )
            for i, error in enumerate(
                [*old, "SMTP 127.0.0.1:25: ConnectionRefusedError(111, 'Connection refused')"]
            ):
                event = conn.scalar(
                    text(
                        "INSERT INTO status_events (entity, entity_id, to_status, actor) "
                        "VALUES ('service_request', :id, 'scheduled', 'test') RETURNING id"
                    ),
                    {"id": rid},
                )
                conn.execute(
                    text(
                        "INSERT INTO notifications (status_event_id, service_request_id, kind, channel, recipient, "
                        "state, last_error) VALUES (:e, :r, 'scheduled', :c, :to, 'failed', :err)"
                    ),
                    {
                        "e": event,
                        "r": rid,
                        "c": "webhook" if i < len(old) else "email",
                        "to": f"https://a{i}.example.org/" if i < len(old) else "ana@example.org",
                        "err": error,
                    },
                )
        command.upgrade(cfg, "head")
        with eng.connect() as conn:
            rows = conn.execute(
                text("SELECT channel, last_error FROM notifications ORDER BY id")
            ).all()
        eng.dispose()
        assert rows == [
            *(("webhook", new) for new in old.values()),
            ("email", "SMTP 127.0.0.1:25: ConnectionRefusedError(111, 'Connection refused')"),
        ]


def test_webhooks_of_keys_revoked_before_the_audit_are_switched_off_with_their_event(
    database_url: str,
) -> None:
    with scratch_database(database_url) as url:
        cfg = alembic_config(url)
        command.upgrade(cfg, "0013")
        eng = make_engine(url)
        with eng.begin() as conn:
            live = conn.scalar(
                text("INSERT INTO api_keys (key_hash, name) VALUES ('h1', 'App') RETURNING id")
            )
            dead = conn.scalar(
                text(
                    "INSERT INTO api_keys (key_hash, name, active) VALUES ('h2', 'Old app', false) RETURNING id"
                )
            )
            hooks = [
                conn.scalar(
                    text(
                        "INSERT INTO webhooks (api_key_id, url, secret) VALUES (:k, :u, 's') RETURNING id"
                    ),
                    {"k": k, "u": f"https://{n}.example.org/"},
                )
                for n, k in (("a", live), ("b", dead))
            ]
        command.upgrade(cfg, "head")
        with eng.connect() as conn:
            active = conn.execute(text("SELECT id, active FROM webhooks ORDER BY id")).all()
            events = conn.execute(
                text("SELECT entity, entity_id, from_status, to_status, actor FROM status_events")
            ).all()
        eng.dispose()
        assert active == [(hooks[0], True), (hooks[1], False)]
        assert events == [("webhook", hooks[1], "active", "inactive", "system")]


def test_sane_times_upgrade_repairs_impossible_client_times_then_refuses_them(
    database_url: str,
) -> None:
    """0010: rows a bad phone clock wrote before (a BC date) are repaired, the audit keeps
    the original value, and the CHECK constraints refuse such values from then on."""
    import psycopg.errors
    from sqlalchemy.exc import IntegrityError

    bc = "0001-01-01 00:00:00+14"  # stored by PostgreSQL as 0001-12-31 10:00 BC
    with scratch_database(database_url) as url:
        cfg = alembic_config(url)
        command.upgrade(cfg, "0009")
        eng = make_engine(url)
        with eng.begin() as conn:
            st = conn.scalar(
                text(
                    "INSERT INTO service_types (code, name, agency, sla_hours, skill, minutes_on_site) "
                    "VALUES ('pothole', 'Pothole', 'Roads', 72, 'asphalt', 30) RETURNING id"
                )
            )
            wo = conn.scalar(
                text(
                    "INSERT INTO work_orders (service_type_id, priority, due_at, skill, minutes_on_site, updated_at) "
                    "VALUES (:st, 3, now(), 'asphalt', 30, :bc) RETURNING id"
                ),
                {"st": st, "bc": bc},
            )
            crew = conn.scalar(
                text(
                    "INSERT INTO crews (code, name, agency) VALUES ('c1', 'C1', 'Roads') RETURNING id"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO status_events (entity, entity_id, to_status, actor, at, note) "
                    "VALUES ('work_order', :wo, 'en_route', 'user:1', :bc, NULL), "
                    "('work_order', :wo, 'new', 'system', now(), 'created')"
                ),
                {"wo": wo, "bc": bc},
            )
            conn.execute(
                text(
                    "INSERT INTO position_pings (crew_id, at, location) VALUES "
                    "(:c, :bc, ST_SetSRID(ST_MakePoint(1.5, 42.5), 4326)), "
                    "(:c, now(), ST_SetSRID(ST_MakePoint(1.5, 42.5), 4326))"
                ),
                {"c": crew, "bc": bc},
            )
            conn.execute(
                text(
                    "INSERT INTO crew_positions (crew_id, at, location) "
                    "VALUES (:c, 'infinity', ST_SetSRID(ST_MakePoint(1.5, 42.5), 4326))"
                ),
                {"c": crew},
            )
            conn.execute(
                text(
                    "INSERT INTO crew_changes (crew_id, change, work_order_id, at) VALUES (:c, 'assigned', :wo, :bc)"
                ),
                {"c": crew, "wo": wo, "bc": bc},
            )
        command.upgrade(cfg, "head")
        with eng.connect() as conn:
            created = conn.scalar(text("SELECT created_at FROM work_orders"))
            en_route = conn.execute(
                text("SELECT at, note FROM status_events WHERE to_status = 'en_route'")
            ).one()
            assert (
                en_route.at == created
                and en_route.note == "[device time 0001-12-31 10:00:00+00 BC out of range]"
            )
            assert conn.scalar(text("SELECT count(*) FROM position_pings")) == 1
            assert conn.scalar(text("SELECT count(*) FROM crew_positions")) == 0
            assert conn.scalar(text("SELECT at = created_at FROM crew_changes")) is True
            # Every repaired value reads back into Python.
            assert conn.scalar(text("SELECT updated_at FROM work_orders")) >= created
        for sql in (
            "UPDATE status_events SET at = :bc",
            "UPDATE position_pings SET at = :bc",
            "UPDATE work_orders SET updated_at = 'infinity'",
            "UPDATE crew_changes SET at = :bc",
        ):
            with pytest.raises(IntegrityError) as caught, eng.begin() as conn:
                conn.execute(text(sql), {"bc": bc})
            assert isinstance(caught.value.orig, psycopg.errors.CheckViolation)
        eng.dispose()
