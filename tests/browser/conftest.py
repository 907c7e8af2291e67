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
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from core.settings import Settings
from tests import factories as f
from tests.databases import scratch_database

ROOT = Path(__file__).resolve().parents[2]
TIME_ZONE = "Europe/Andorra"
PASSWORD = "secret-pass"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}
# Flags for chromium in a sandboxed, closed network: without the background-networking
# ones it keeps trying (and failing) to reach Google's services at every start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--metrics-recording-only",
]
SCREENSHOTS = Path(os.environ.get("STREETLOOP_SCREENSHOTS") or ROOT / "test-results" / "screens")


def chromium_path() -> str:
    for candidate in (
        os.environ.get("STREETLOOP_CHROMIUM"),
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "chromium not found: run `scripts/browser.sh install` (make test does), or set STREETLOOP_CHROMIUM; "
        "`-m 'not browser'` leaves the browser stage out",
        pytrace=False,
    )


# -- the live server ---------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class LiveServer:
    """StreetLoop on 127.0.0.1 with its own database; `stop()`/`start()` take the server
    down and bring it back on the same port (a crew's phone losing the network, for real)."""

    settings: Settings
    app: Any
    sessions: Any
    port: int = 0
    requests: list[tuple[str, str]] = field(
        default_factory=list
    )  # (method, path) the server answered
    _server: Any = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        server = make_server(
            "127.0.0.1",
            self.port,
            self._recording(self.app),
            threaded=True,
            request_handler=_QuietHandler,
        )
        self.port = server.server_port
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="browser-live-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=10)
            self._server = None

    def _recording(self, app: Any) -> Callable[..., Any]:
        def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
            self.requests.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")))
            return app(environ, start_response)

        return wsgi

    def received(self, method: str, prefix: str) -> list[str]:
        return [p for m, p in self.requests if m == method and p.startswith(prefix)]


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


@dataclass
class Watch:
    """What a browser context did that a test must not let pass."""

    origin: str
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    expected: list[re.Pattern[str]] = field(default_factory=list)

    def expect(self, pattern: str) -> None:
        """An error the test provokes on purpose (chromium logs every 4xx answer to a fetch,
        e.g. "status of 401 .*/auth/token" for a wrong password)."""
        self.expected.append(re.compile(pattern))

    def attach_context(self, context: Any) -> None:
        def guard(route: Any) -> None:
            url = route.request.url
            parts = urlsplit(url)
            if (
                parts.scheme in ("data", "blob")
                or f"{parts.scheme}://{parts.netloc}" == self.origin
            ):
                route.fallback()
            else:
                self.outside.append(url)
                route.abort("blockedbyclient")

        context.route("**/*", guard)
        context.on("page", self.attach_page)
        for page in context.pages:
            self.attach_page(page)

    def attach_page(self, page: Any) -> None:
        page.on(
            "console",
            lambda m: (
                self.errors.append(f"console.{m.type}: {m.text} ({m.location.get('url', '')})")
                if m.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def check(self) -> None:
        assert not self.outside, f"the page asked for something outside the server: {self.outside}"
        errors = [e for e in self.errors if not any(p.search(e) for p in self.expected)]
        assert not errors, "the browser console showed errors:\n" + "\n".join(errors)


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


def launch_persistent(
    playwright_driver: Any, live: LiveServer, profile: Path, **options: Any
) -> tuple[Any, Watch]:
    """A browser on a profile folder that outlives it: closing and launching again on the
    same folder is a phone's app being closed and opened (its IndexedDB, caches and
    service worker are kept)."""
    context = playwright_driver.chromium.launch_persistent_context(
        str(profile),
        executable_path=chromium_path(),
        args=CHROMIUM_ARGS,
        headless=True,
        base_url=live.url,
        timezone_id="UTC",
        locale="en-GB",
        **options,
    )
    context.set_default_timeout(15_000)
    watch = Watch(origin=live.url)
    watch.attach_context(context)
    return context, watch


def sign_in(page: Any, email: str, password: str = PASSWORD) -> None:
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def shot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def accessible(page: Any, name: str) -> None:
    """axe-core on the page as it is now: no serious or critical finding."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    detail = "\n".join(
        f"- {v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(
            n["target"][0] if isinstance(n["target"][0], str) else str(n["target"])
            for n in v["nodes"][:5]
        )
        for v in bad
    )
    assert not bad, f"axe found {len(bad)} serious/critical problems on {name}:\n{detail}"


def wait_for(
    predicate: Callable[[], Any], timeout_s: float = 30, what: str = "the condition"
) -> Any:
    """Poll a database-side condition (the browser side has Playwright's own waits)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


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


__all__ = [
    "DESKTOP",
    "PHONE",
    "PASSWORD",
    "LiveServer",
    "Watch",
    "accessible",
    "launch_persistent",
    "shot",
    "sign_in",
    "wait_for",
]
