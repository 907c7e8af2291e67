"""Benchmark: a burst of wrong passwords against one account, with and without the
sign-in limits, and what it does to GET /open311/v2/services.json meanwhile.

Creates a throwaway database on the PostgreSQL server given by --database-url or
$DATABASE_URL (an admin URL), migrates it, adds one account, and starts two gunicorn
servers on loopback ports side by side: one with the default limits (5 failures per
account, 100 per address, per 15 minutes) and one with limits too high to matter (as
before they existed). Against each, in turn: services.json timed while idle; then
--guesses wrong passwords from --threads threads while one more thread times
services.json; then the right password once. Prints numbers; asserts nothing.

    .venv/bin/python bench/sign_in_burst.py [--database-url URL] [--guesses 80] [--threads 4]

The database and servers are removed at the end (also on Ctrl-C/errors).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.open311_requests import (  # noqa: E402
    create_database,
    drop_database,
    log,
    migrate,
    pct,
    seed_reference,
    start_gunicorn,
)
from core.settings import normalize_database_url  # noqa: E402

EMAIL, PASSWORD = "ana@bench.example", "the-right-password"
NO_LIMITS = {
    "STREETLOOP_SIGN_IN_ACCOUNT_FAILURES": "1000",
    "STREETLOOP_SIGN_IN_ADDRESS_FAILURES": "1000000",
}


def seed_user(url: str) -> None:
    from core.auth import hash_password
    from core.db import make_engine, make_sessionmaker
    from core.models import User

    engine = make_engine(url)
    with make_sessionmaker(engine)() as s:
        s.add(
            User(email=EMAIL, name="Ana", role="dispatcher", password_hash=hash_password(PASSWORD))
        )
        s.commit()
    engine.dispose()


def call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    start = time.perf_counter()
    try:
        payload = json.dumps(body) if body is not None else None
        conn.request(
            method,
            path,
            body=payload,
            headers={"Content-Type": "application/json"} if payload else {},
        )
        resp = conn.getresponse()
        resp.read()
        return resp.status, (time.perf_counter() - start) * 1000
    finally:
        conn.close()


def services_ms(port: int, n: int) -> list[float]:
    return [call(port, "GET", "/open311/v2/services.json")[1] for _ in range(n)]


def run(port: int, guesses: int, threads: int) -> dict:
    idle = services_ms(port, 40)
    during: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            during.append(call(port, "GET", "/open311/v2/services.json")[1])

    prober = threading.Thread(target=probe)
    prober.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        answers = Counter(
            pool.map(
                lambda n: call(
                    port, "POST", "/api/v1/auth/token", {"email": EMAIL, "password": f"guess-{n}"}
                )[0],
                range(guesses),
            )
        )
    burst_s = time.perf_counter() - start
    stop.set()
    prober.join()
    right, _ = call(port, "POST", "/api/v1/auth/token", {"email": EMAIL, "password": PASSWORD})
    return {
        "answers": dict(sorted(answers.items())),
        "burst_s": burst_s,
        "idle_p50": pct(idle, 0.5),
        "during_p50": pct(during, 0.5),
        "during_p95": pct(during, 0.95),
        "during_n": len(during),
        "right": right,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    p.add_argument("--guesses", type=int, default=80)
    p.add_argument("--threads", type=int, default=4)
    args = p.parse_args()
    if not args.database_url:
        sys.exit(
            "give --database-url or set DATABASE_URL (an admin URL of a PostGIS server on 127.0.0.1)"
        )
    admin = normalize_database_url(args.database_url)
    name, url = create_database(admin)
    servers = []
    try:
        migrate(url)
        seed_reference(url)
        seed_user(url)
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            for label, extra in (("no limits (as before)", NO_LIMITS), ("default limits", {})):
                saved = dict(os.environ)
                os.environ.update(extra)
                logdir = Path(tmp) / label.split()[0]
                logdir.mkdir()
                try:
                    servers.append(server := start_gunicorn(url, 2, logdir))
                finally:
                    os.environ.clear()
                    os.environ.update(saved)
                log(f"{label}: {args.guesses} wrong passwords from {args.threads} threads")
                results[label] = run(server.port, args.guesses, args.threads)
                server.stop()
        print(
            f"\n{args.guesses} wrong passwords for one account, {args.threads} threads, "
            "gunicorn -w 2, then the right one\n"
        )
        print(
            "| server                | answers to the guesses | burst s | services.json p50 idle "
            "| p50 during | p95 during | right password |"
        )
        print(
            "|-----------------------|------------------------|--------:|-----------------------:|-----------:|-----------:|---------------:|"
        )
        for label, r in results.items():
            answers = ", ".join(f"{n} × {code}" for code, n in r["answers"].items())
            print(
                f"| {label:21} | {answers:22} | {r['burst_s']:7.1f} | {r['idle_p50']:19.1f} ms "
                f"| {r['during_p50']:7.1f} ms "
                f"| {r['during_p95']:7.1f} ms | {r['right']:14} |"
            )
    finally:
        for server in servers:
            server.stop()
        drop_database(admin, name)
        log(f"dropped database {name}")


if __name__ == "__main__":
    main()
