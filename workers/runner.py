"""Running the worker process: it outlives a database restart, and a crash is a failure.

procrastinate's worker stops *gracefully* when one of its side tasks (the LISTEN
connection, the heartbeat) loses the database, and `run_worker` then returns as if
asked to stop: the process exited with status 0 and nothing restarted it. Here a worker
that lost its database is started again in the same process once the database answers
(with a back-off, and a log line per attempt), and anything else that ends a worker
unasked is a crash: the process exits with status 1, so systemd, Kubernetes or
scripts/demo.sh see a failure and can act on it. SIGINT/SIGTERM stop it cleanly (0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeGuard

import psycopg
from procrastinate import App
from procrastinate.worker import Worker

from workers.stalled import keep_retrying_stalled_jobs

log = logging.getLogger("streetloop.worker")

# A run that lasted this long was a success: the next loss starts the back-off afresh.
_HEALTHY_RUN_S = 60.0
_FIRST_DELAY_S = 0.5
# Long enough for idle pool tasks to see the stop, not for one stuck connecting.
_POOL_CLOSE_S = 0.2


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 2
    queues: tuple[str, ...] | None = None
    # Seconds without a heartbeat after which a worker counts as dead and its running jobs
    # are queued again (see workers.stalled).
    stalled_after_s: float = 60.0
    reconnect_max_s: float = 30.0
    connect_timeout_s: int = 5

    @property
    def heartbeat_s(self) -> float:
        # Four beats per timeout: one late beat (a busy loop, a slow query) is no death.
        return max(self.stalled_after_s / 4, 0.5)


def lost_database(exc: BaseException | None) -> TypeGuard[BaseException]:
    """Whether `exc` (or what caused it) says the database went away, rather than a bug.

    procrastinate wraps every driver error in ConnectorException; the connection problems
    are psycopg's OperationalError (refused, reset, admin shutdown, pool timeout) or a
    socket's OSError underneath."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (psycopg.OperationalError, OSError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class _SideTaskFailures(logging.Filter):
    """Keeps the exception of a worker side task that failed.

    procrastinate does not raise it: it logs it (action `side_task_failed`, with
    exc_info) and stops the worker as if asked to. The log record is the only place that
    says *why* the worker stopped, so this filter reads it there; it lets every record
    through unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.exception: BaseException | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            getattr(record, "action", None) == "side_task_failed"
            and record.exc_info
            and self.exception is None
        ):
            self.exception = record.exc_info[1]
        return True

    @classmethod
    @contextlib.contextmanager
    def watching(cls, worker: Worker) -> Iterator[_SideTaskFailures]:
        watcher = cls()
        worker.logger.addFilter(watcher)
        try:
            yield watcher
        finally:
            worker.logger.removeFilter(watcher)


async def _database_answers(conninfo: str, timeout_s: int) -> BaseException | None:
    """None when a fresh connection can run a query, else what went wrong."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            conninfo, connect_timeout=timeout_s, autocommit=True
        )
        async with conn:
            await conn.execute("SELECT 1")
    except (psycopg.Error, OSError) as exc:
        return exc
    return None


class Supervisor:
    """Runs procrastinate workers one after the other until asked to stop."""

    def __init__(self, app: App, conninfo: str, options: WorkerOptions) -> None:
        self.app = app
        self.conninfo = conninfo
        self.options = options
        self.restarts = 0
        self._stopping = asyncio.Event()
        self._worker: Worker | None = None
        self._main: asyncio.Task[int] | None = None

    def stop(self) -> None:
        """SIGINT/SIGTERM: a running worker finishes its jobs; a wait for the database ends now."""
        self._stopping.set()
        if self._worker is not None:
            self._worker.stop()
        elif self._main is not None:
            self._main.cancel()

    async def run(self, *, install_signal_handlers: bool = True) -> int:
        """The process's exit status: 0 when stopped, 1 when a worker crashed."""
        self._main = asyncio.current_task()
        loop = asyncio.get_running_loop()
        signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM) if install_signal_handlers else ()
        for sig in signals:
            loop.add_signal_handler(sig, self.stop)
        try:
            return await self._loop()
        except asyncio.CancelledError:
            if self._stopping.is_set():
                log.info("stopped while waiting for the database")
                return 0
            raise
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    async def _loop(self) -> int:
        loop = asyncio.get_running_loop()
        delay = _FIRST_DELAY_S
        while not self._stopping.is_set():
            started = loop.time()
            # Checked before opening the pool: psycopg_pool would wait its full 30 s
            # timeout for a database that refuses connections, and say less about why.
            failure = await _database_answers(self.conninfo, self.options.connect_timeout_s)
            if failure is None:
                failure = await self._run_one_worker()
                if self._stopping.is_set():
                    return 0
                if not lost_database(failure):
                    log.critical("worker crashed: %r", failure, exc_info=failure)
                    return 1
                if loop.time() - started >= _HEALTHY_RUN_S:
                    delay = _FIRST_DELAY_S
                self.restarts += 1
            log.warning(
                "worker lost the database (%s); connecting again in %.1f s",
                _one_line(failure),
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, self.options.reconnect_max_s)
        return 0

    async def _run_one_worker(self) -> BaseException | None:
        """Run a worker until it stops; what made it stop unasked (None: it was asked)."""
        opts = self.options
        try:
            async with self.app.open_async():
                worker = Worker(
                    self.app,
                    queues=list(opts.queues) if opts.queues else None,
                    concurrency=opts.concurrency,
                    # Signals are ours: procrastinate's handler would stop the worker
                    # but not a wait for the database.
                    install_signal_handlers=False,
                    update_heartbeat_interval=opts.heartbeat_s,
                    stalled_worker_timeout=opts.stalled_after_s,
                )
                self._worker = worker
                if self._stopping.is_set():  # a signal between the check and here
                    return None
                if self.restarts:
                    log.info(
                        "database reachable again; worker restarted (restart %d)", self.restarts
                    )
                # Started with the worker, on the worker's pool: jobs of workers that died
                # are queued again within about `stalled_after_s` (see workers.stalled).
                reaper = asyncio.create_task(
                    keep_retrying_stalled_jobs(
                        self.app, opts.stalled_after_s, every_s=opts.heartbeat_s
                    ),
                    name="retry_stalled_jobs",
                )
                try:
                    with _SideTaskFailures.watching(worker) as watcher:
                        await worker.run()
                finally:
                    reaper.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reaper
                    # Before procrastinate's own close (which then has nothing to do): it
                    # waits 5 s for each pool task, and with the database gone each is stuck
                    # in a connection attempt. Those attempts end by their connect timeout,
                    # or are cancelled with the event loop when the process stops.
                    # App.connector is typed as any connector; ours is the PsycopgConnector
                    # of workers.app, which has a pool.
                    await self.app.connector.pool.close(timeout=_POOL_CLOSE_S)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - classified by the caller: lost database or crash
            return exc
        finally:
            self._worker = None
        if self._stopping.is_set():
            return None
        # Not asked to stop, yet stopped: a side task failed (or procrastinate stopped
        # for a reason it did not log, which is a crash too).
        return watcher.exception or RuntimeError("the worker stopped without being asked to")


def _one_line(exc: BaseException) -> str:
    """The driver's own words: procrastinate's wrapper says only "Database error"."""
    root = exc
    while (root.__cause__ or root.__context__) is not None and not isinstance(root, psycopg.Error):
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    text = " ".join(str(root).split()) or type(root).__name__
    return text[:200]


def run_worker(app: App, conninfo: str, options: WorkerOptions) -> int:
    """Run workers on the app's tasks until SIGINT/SIGTERM; returns the exit status."""
    app.perform_import_paths()
    return asyncio.run(Supervisor(app, conninfo, options).run())
