"""The fuzz stage (`-m fuzz`): a live HTTP server on 127.0.0.1 over a database and users of
its own, so whatever the fuzzers create, change or lock (a deactivated user, sign-in
limits) touches nothing other tests rely on.

The stage prints its case counts and elapsed time in pytest's terminal summary."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text
from werkzeug.serving import WSGIRequestHandler, make_server

from core.settings import Settings
from tests import factories as f
from tests.databases import scratch_database

ROLES = ("crew", "dispatcher", "supervisor", "admin", "call_taker")


@dataclass
class FuzzStats:
    """Filled by the fuzz tests, printed at the end of the session."""

    # Summed over the stage's own fixtures and tests: other tests may run in between.
    seconds: float = 0.0
    ran: bool = False
    cases: Counter = field(default_factory=Counter)  # (suite, role) -> requests sent
    operations: Counter = field(default_factory=Counter)  # (suite, role) -> operations fuzzed

    @contextmanager
    def timed(self) -> Iterator[None]:
        self.ran = True
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds += time.monotonic() - started


STATS = FuzzStats()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001, ARG001
    if not STATS.ran:
        return
    tr = terminalreporter
    tr.section("fuzz stage")
    for (suite, role), n in sorted(STATS.cases.items()):
        ops = STATS.operations[(suite, role)]
        tr.write_line(f"{suite:<12} {role:<11} {ops:>3} operations {n:>6} cases")
    tr.write_line(
        f"fuzz total: {sum(STATS.cases.values())} cases in {STATS.seconds:.1f} s (setup included)"
    )


@pytest.fixture(scope="session")
def fuzz_database_url(database_url: str) -> Iterator[str]:
    """A database of the fuzz stage's own, migrated, dropped afterwards."""
    from alembic import command

    from api.cli import alembic_config

    with scratch_database(database_url, "streetloop_fuzz") as url:
        with STATS.timed():
            command.upgrade(alembic_config(url), "head")
        yield url


@dataclass
class LiveServer:
    base_url: str
    app: object
    sessions: object
    user_ids: dict[str, int]

    def headers(self, role: str) -> dict[str, str]:
        """A fresh token for `role`'s user, made active with its role again first: an admin
        being fuzzed may have deactivated it, changed its role or reset its password."""
        from core.auth import issue_token
        from core.models import User

        with self.sessions() as s:
            user = s.get(User, self.user_ids[role])
            s.execute(
                text(
                    "UPDATE users SET active = true, role = :role, crew_id = :crew WHERE id = :id"
                ),
                {"role": role, "crew": user.crew_id if role == "crew" else None, "id": user.id},
            )
            token, _ = issue_token(s, user, 3600)
            s.commit()
        return {"Authorization": f"Bearer {token}"}


class _QuietHandler(WSGIRequestHandler):
    """Thousands of fuzz requests: no access-log line each (failures say what was sent)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _seed(sessions) -> dict[str, int]:  # noqa: ANN001
    """A small city, so ids and codes the fuzzers guess sometimes hit real rows; the
    ids of one user per role."""
    with sessions() as s:
        f.service_type(s, attributes=f.full_attributes())
        f.service_type(s, "graffiti", skill="paint")
        f.district(s)
        f.depot(s)
        crew = f.crew(s)
        f.api_key(s)
        for k in range(3):
            f.report(s, "graffiti", lon=f.offset(f.LON, f.LAT, 200 * k)[0])
        users = {
            role: f.user(s, f"fuzz-{role}@example.org", role, crew=crew if role == "crew" else None)
            for role in ROLES
        }
        s.commit()
        return {role: u.id for role, u in users.items()}


@pytest.fixture(scope="session")
def live_server(
    fuzz_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """create_app on a real threaded HTTP server bound to 127.0.0.1 (an OS-chosen port)."""
    from api import create_app
    from workers.app import Queue

    settings = Settings(
        database_url=fuzz_database_url,
        secret_key="fuzz",
        media_dir=Path(tmp_path_factory.mktemp("fuzz-media")),
        timezone="Europe/Andorra",
        audit_sample_rate=0.0,
    )
    queue = Queue(settings)
    app = create_app(settings, queue=queue)
    sessions = app.extensions["streetloop.sessions"]
    try:
        with STATS.timed():
            user_ids = _seed(sessions)
            server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
            thread = threading.Thread(target=server.serve_forever, name="fuzz-server", daemon=True)
            thread.start()
        try:
            yield LiveServer(f"http://127.0.0.1:{server.server_port}", app, sessions, user_ids)
        finally:
            server.shutdown()
            thread.join(timeout=10)
            server.server_close()
    finally:
        queue.close()
        sessions.kw["bind"].dispose()
