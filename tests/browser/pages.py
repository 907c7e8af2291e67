"""What the browser tests drive the screens with: the live server, the browser's watch
(no request leaves the server, no console error passes), screenshots, axe-core's check
and the sign-in. The fixtures that start them are tests/browser/conftest.py's."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from core.settings import Settings

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
