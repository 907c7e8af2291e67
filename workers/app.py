"""The procrastinate app. Tasks take ids, open their own session, call a domain function, commit."""

from __future__ import annotations

import threading
from typing import Any

from procrastinate import App, PsycopgConnector

from core.settings import Settings, libpq_url

app = App(connector=PsycopgConnector(), import_paths=["workers.tasks"])


def configured_app(settings: Settings) -> App:
    """The app bound to the configured database (the worker and the web process both use this)."""
    return app.with_connector(PsycopgConnector(conninfo=libpq_url(settings.database_url)))


class Queue:
    """Sync job deferral for the web process, opened on first use."""

    def __init__(self, settings: Settings) -> None:
        self._app = configured_app(settings)
        self._opened = False
        self._lock = threading.Lock()

    def defer(self, task_name: str, **kwargs: Any) -> int:
        with self._lock:
            if not self._opened:
                self._app.open()
                self._opened = True
        return self._app.configure_task(name=task_name).defer(**kwargs)

    def close(self) -> None:
        with self._lock:
            if self._opened:
                self._app.close()
                self._opened = False
