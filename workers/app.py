"""The procrastinate app. Tasks take ids, open their own session, call a domain function, commit."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from procrastinate import App, PsycopgConnector

from core.settings import Settings, libpq_url

# Tasks register on this app; its connector is replaced with the configured
# database when a worker starts (see `bound_to`).
app = App(connector=PsycopgConnector(), import_paths=["workers.tasks"])


def connector_for(settings: Settings) -> PsycopgConnector:
    return PsycopgConnector(conninfo=libpq_url(settings.database_url))


@contextlib.contextmanager
def bound_to(settings: Settings) -> Iterator[App]:
    """The task app, talking to the configured database for the duration of the block."""
    with app.replace_connector(connector_for(settings)) as bound:
        yield bound


class Queue:
    """Sync job deferral for the web process: its own small pool, opened on first use."""

    def __init__(self, settings: Settings) -> None:
        # A task-less app: deferring only needs the task's name and queue.
        self._app = App(connector=connector_for(settings))
        self._opened = False
        self._lock = threading.Lock()

    def defer(self, task_name: str, **kwargs: Any) -> int:
        import workers.tasks  # noqa: F401  (registers the tasks, so their queues are known)

        with self._lock:
            if not self._opened:
                self._app.open()
                self._opened = True
        task = app.tasks[task_name]
        return self._app.configure_task(name=task_name, queue=task.queue).defer(**kwargs)

    def close(self) -> None:
        with self._lock:
            if self._opened:
                self._app.close()
                self._opened = False
