"""The procrastinate app. Tasks take ids, open their own session, call a domain function, commit."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from procrastinate import App, PsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued

from core.settings import Settings, libpq_url

# Tasks register on this app; its connector is replaced with the configured
# database when a worker starts (see `bound_to`).
app = App(connector=PsycopgConnector(), import_paths=["workers.tasks"])


def connector_for(settings: Settings, *, web: bool = False) -> PsycopgConnector:
    """psycopg_pool's defaults are 4 connections kept open, 3 threads (or tasks) making
    them, no connect timeout and 30 s to wait for a connection. With a database host
    gone, each of those threads then hung in its connection attempt, and closing the pool
    waited 5 s for each in turn. Here every attempt gives up after the connect timeout,
    so a pool closes within that time, and a caller waits no longer for a connection."""
    timeout = settings.db_connect_timeout_s
    # psycopg_pool's keyword arguments; the web app's defers are one short INSERT each.
    sizes: dict[str, Any] = {"min_size": 1, "max_size": 4, "num_workers": 1} if web else {}
    return PsycopgConnector(
        conninfo=libpq_url(settings.database_url),
        kwargs={"connect_timeout": timeout},
        timeout=float(timeout),
        **sizes,
    )


@contextlib.contextmanager
def bound_to(settings: Settings) -> Iterator[App]:
    """The task app, talking to the configured database for the duration of the block."""
    with app.replace_connector(connector_for(settings)) as bound:
        yield bound


class Queue:
    """Sync job deferral for the web process: its own small pool, opened on first use."""

    def __init__(self, settings: Settings) -> None:
        # A task-less app: deferring only needs the task's name and queue.
        self._app = App(connector=connector_for(settings, web=True))
        self._opened = False
        self._closed = False
        self._lock = threading.Lock()

    def defer(
        self, task_name: str, *, queueing_lock: str | None = None, **kwargs: Any
    ) -> int | None:
        """Queue the task with these arguments; its job id, or None when `queueing_lock`
        names a job still waiting (which does the same work)."""
        import workers.tasks  # noqa: F401  (registers the tasks, so their queues are known)

        with self._lock:
            if self._closed:
                # The process is stopping (close runs at exit): opening a new pool now
                # would start threads that connect, and hold the exit up again. (Photos
                # and notifications are found again by the worker's sweeps; a plan would
                # stay queued until asked again.)
                raise RuntimeError(f"the job queue is closed; {task_name} not queued")
            if not self._opened:
                self._app.open()
                self._opened = True
        task = app.tasks[task_name]
        try:
            deferrer = self._app.configure_task(
                name=task_name, queue=task.queue, queueing_lock=queueing_lock
            )
            return deferrer.defer(**kwargs)
        except AlreadyEnqueued:
            return None

    def close(self) -> None:
        """Close the pool for good; its threads end within the connect timeout."""
        with self._lock:
            self._closed = True
            if self._opened:
                self._app.close()
                self._opened = False
