"""A throwaway PostgreSQL cluster of a test's own, for tests that stop or restart the
server: the shared dev cluster (and every other test session on it) is never touched.

Made with scripts/pg.sh (its STREETLOOP_PGDATA / STREETLOOP_PGPORT), on a free port of
127.0.0.1, in a temporary directory removed afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
PG = ROOT / "scripts" / "pg.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    base: Path
    port: int

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "STREETLOOP_PGDATA": str(self.base),
            "STREETLOOP_PGPORT": str(self.port),
        }

    def pg(self, *args: str) -> str:
        return subprocess.run(
            [str(PG), *args], env=self.env, check=True, capture_output=True, text=True
        ).stdout.strip()

    def url(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def createdb(self, name: str, *, migrated: bool, template: str | None = None) -> str:
        """A database; `migrated` runs the migrations, `template` copies a database made before."""
        if template:
            query(self.url("postgres"), f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            self.pg("createdb", name)
        url = self.url(name)
        if migrated and not template:
            subprocess.run(
                [sys.executable, "-c", "from api.cli import main; main()", "db", "upgrade"],
                cwd=ROOT,
                env={**self.env, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)},
                check=True,
                capture_output=True,
            )
        return url

    def _pg_ctl(self, *args: str) -> None:
        bindir = Path(
            subprocess.run(
                ["bash", "-c", "ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        data = self.base / "data"
        cmd = [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(self.base / "log" / "postgresql.log"),
            *args,
        ]
        if os.geteuid() == 0:  # pg.sh runs the server as the postgres OS user
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, cwd="/")

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every connection is cut, the server comes back."""
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self._pg_ctl("stop", "-m", "fast")

    def start(self) -> None:
        self.pg("start")


@contextmanager
def own_cluster() -> Iterator[Cluster]:
    base = Path(tempfile.mkdtemp(prefix="streetloop-test-pg-"))
    base.chmod(0o755)  # pg.sh hands it to the postgres OS user when run as root
    cluster = Cluster(base=base, port=free_port())
    try:
        cluster.start()
        yield cluster
    finally:
        subprocess.run([str(PG), "destroy"], env=cluster.env, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def wait_for(predicate, timeout: float, what: str, step: float = 0.1):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def query(url: str, sql: str, *params: object):  # noqa: ANN201
    with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def start_worker(
    url: str, log: Path, *, extra_env: dict[str, str] | None = None, args: tuple[str, ...] = ()
) -> WorkerProcess:
    """`streetloop worker` of this checkout, in its own process."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PYTHONPATH": str(ROOT),
        "STREETLOOP_MEDIA_DIR": str(log.parent / "media"),
        **(extra_env or {}),
    }
    env.pop("STREETLOOP_ROAD_DATA", None)
    fh = log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from api.cli import main; main()", "worker", *args],
        cwd=ROOT,
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
        text=True,
    )
    fh.close()
    return WorkerProcess(proc, log)


def defer(url: str, task: str, **kwargs: object) -> int:
    """Queue a job the way the web app does (workers.app.Queue)."""
    from core.settings import Settings
    from workers.app import Queue

    queue = Queue(Settings(database_url=url))
    try:
        return queue.defer(task, **kwargs)
    finally:
        queue.close()


def job_status(url: str, job_id: int) -> str | None:
    rows = query(url, "SELECT status::text FROM procrastinate_jobs WHERE id = %s", job_id)
    return rows[0][0] if rows else None


def workers_registered(url: str) -> int:
    return query(url, "SELECT count(*) FROM procrastinate_workers")[0][0]
