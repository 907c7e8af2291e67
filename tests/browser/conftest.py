"""The browser stage (`-m browser`): the screens driven in Debian's chromium by Playwright,
against a live StreetLoop on 127.0.0.1 over a database of the stage's own, with a real
job worker beside it (plans are solved, photos processed, as in production).

- Chromium is Debian's package (scripts/browser.sh installs it); Playwright's own browser
  download is never used. STREETLOOP_CHROMIUM overrides the path.
- Every page is watched: a request to anything but the live server is aborted and fails the
  test (nothing may load from outside, the city's network is closed); so does any error in
  the browser console or an uncaught exception in the page.
- `accessible(page, name)` runs axe-core and fails on serious or critical findings.
- `shot(page, name)` saves a screenshot under test-results/screens/ (STREETLOOP_SCREENSHOTS
  overrides), for the people who look at what the screens show.

The stage prints its time with the other slow stages (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from tests import factories as f
from tests.browser.pages import (
    CHROMIUM_ARGS,
    DESKTOP,
    ROOT,
    SCREENSHOTS,
    TIME_ZONE,
    LiveServer,
    Watch,
    chromium_path,
)
from tests.databases import scratch_database

# -- the live server ---------------------------------------------------------------


@dataclass
class Worker:
    """`streetloop worker` in a process of its own, on the live server's database."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        # The child writes to its own copy of the descriptor: ours is closed at once (left
        # open, it is a ResourceWarning, an error under filterwarnings=error).
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "worker", "--concurrency", "2"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def seed_city(sessions: Any) -> dict[str, Any]:
    """A small city: two service types, a district, a yard, two crews and one user per role
    (all with PASSWORD). Scenarios add what they need on top."""
    with sessions() as s:
        f.service_type(s, "pothole", skill="asphalt")
        f.service_type(s, "graffiti", skill="paint")
        f.district(s)
        f.depot(s)
        pothole = f.crew(s, "pothole-1", skills=["asphalt"])
        paint = f.crew(s, "paint-1", skills=["paint"])
        users = {
            "dispatcher": f.user(s, "dispatcher@example.org", "dispatcher"),
            "supervisor": f.user(s, "supervisor@example.org", "supervisor"),
            "admin": f.user(s, "admin@example.org", "admin"),
            "crew": f.user(s, "crew@example.org", "crew", crew=pothole),
            "paint_crew": f.user(s, "paint@example.org", "crew", crew=paint),
        }
        s.commit()
        return {"users": {k: u.email for k, u in users.items()}, "crews": ["pothole-1", "paint-1"]}


@pytest.fixture(scope="session")
def browser_database_url(database_url: str) -> Iterator[str]:
    from alembic import command

    from api.cli import alembic_config

    with scratch_database(database_url, "streetloop_browser") as url:
        command.upgrade(alembic_config(url), "head")
        yield url


@pytest.fixture(scope="session")
def live(
    browser_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The live server (and the seeded city), shared by the stage's tests."""
    from api import create_app
    from workers.app import Queue

    media = tmp_path_factory.mktemp("browser-media")
    settings = Settings(
        database_url=browser_database_url,
        secret_key="browser-stage",
        media_dir=media,
        timezone=TIME_ZONE,
        audit_sample_rate=0.0,
    )
    queue = Queue(settings)
    app = create_app(settings, queue=queue)
    server = LiveServer(settings=settings, app=app, sessions=app.extensions["streetloop.sessions"])
    server.city = seed_city(server.sessions)  # type: ignore[attr-defined]
    server.start()
    try:
        yield server
    finally:
        server.stop()
        queue.close()
        server.sessions.kw["bind"].dispose()


@pytest.fixture(scope="session")
def worker(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A job worker for the live server's database (plans, photos); started on first use."""
    env = {
        **os.environ,
        "DATABASE_URL": live.settings.database_url,
        "STREETLOOP_MEDIA_DIR": str(live.settings.media_dir),
        "STREETLOOP_TIMEZONE": TIME_ZONE,
        "STREETLOOP_SECRET_KEY": "browser-stage",
        "STREETLOOP_AUDIT_SAMPLE_RATE": "0",
    }
    env.pop("STREETLOOP_ROAD_DATA", None)
    w = Worker(env=env, log_path=tmp_path_factory.mktemp("browser-worker") / "worker.log")
    w.start()
    try:
        yield w
    finally:
        w.stop()


# -- the browser ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def chromium(playwright_driver: Any) -> Iterator[Any]:
    browser = playwright_driver.chromium.launch(
        executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


@pytest.fixture
def browser_context(chromium: Any, live: LiveServer) -> Iterator[Callable[..., Any]]:
    """new(viewport=DESKTOP, **context options) → (context, watch); every context is checked
    for outside requests and console errors when the test ends, then closed."""
    made: list[tuple[Any, Watch]] = []

    def new(viewport: dict[str, int] = DESKTOP, **options: Any) -> tuple[Any, Watch]:
        context = chromium.new_context(
            viewport=viewport, base_url=live.url, timezone_id="UTC", locale="en-GB", **options
        )
        context.set_default_timeout(15_000)
        watch = Watch(origin=live.url)
        watch.attach_context(context)
        made.append((context, watch))
        return context, watch

    yield new
    for context, watch in made:
        context.close()
        watch.check()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here is in the browser stage, and the stage runs last.

    Last, because Playwright's sync API keeps an event loop running in the main thread
    from the first browser test to the end of the session (the driver is session-wide,
    started once): any `asyncio.run()` after it (the worker tests) would fail with
    "cannot be called from a running event loop"."""
    here = Path(__file__).parent
    browser, others = [], []
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.stage("browser"))
            browser.append(item)
        else:
            others.append(item)
    items[:] = others + browser


def pytest_sessionfinish(session: pytest.Session) -> None:
    if SCREENSHOTS.is_dir() and any(SCREENSHOTS.iterdir()):
        print(f"\nbrowser stage: screenshots in {SCREENSHOTS}", file=sys.stderr)
