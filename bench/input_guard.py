"""What the request guard (`api.inputs`) costs: the walk for NUL characters and lone
surrogates over the largest body a client sends (a phone's 5,000 GPS pings), next to
parsing that body, measured side by side in one run. Pure CPU, no database or server.

    .venv/bin/python bench/input_guard.py [--pings 5000] [--repeats 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask import Flask  # noqa: E402

from api.inputs import _bad_field, _first_bad  # noqa: E402


def _medians_ms(fns: dict[str, object], repeats: int) -> dict[str, float]:
    """Median time of each, run in turns (one of each per round, after a warm-up round),
    so a shared machine's load falls on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()  # type: ignore[operator]
            if round_:
                times[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pings", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    t0 = datetime(2026, 12, 1, 8, tzinfo=UTC)
    body = json.dumps(
        {
            "pings": [
                {
                    "time": (t0 + timedelta(seconds=3 * k)).isoformat(),
                    "lat": 42.5 + k * 1e-6,
                    "lon": 1.52,
                    "accuracy": 5.0,
                    "speed": 3.2,
                    "heading": 90.0,
                }
                for k in range(args.pings)
            ]
        }
    )
    parsed = json.loads(body)
    app = Flask(__name__)
    form = {
        "api_key": "k",
        "service_code": "pothole",
        "lat": "42.5",
        "long": "1.52",
        "description": "x" * 4000,
        "email": "a@example.org",
        "attribute[size]": "small",
    }

    def guard_json() -> None:
        # As in a request: the guard parses (Flask caches it for the view) and walks the body.
        with app.test_request_context(
            "/api/v1/crew/positions", method="POST", data=body, content_type="application/json"
        ):
            assert _bad_field() is None

    def guard_json_always_walking() -> None:
        # The guard without its raw-bytes pre-check, for comparison.
        with app.test_request_context(
            "/api/v1/crew/positions", method="POST", data=body, content_type="application/json"
        ):
            from flask import request

            assert _first_bad(request.get_json()) is None

    def parse_only() -> None:
        with app.test_request_context(
            "/api/v1/crew/positions", method="POST", data=body, content_type="application/json"
        ):
            from flask import request

            request.get_json()

    def guard_form() -> None:
        with app.test_request_context("/open311/v2/requests.json", method="POST", data=form):
            assert _bad_field() is None

    def parse_form() -> None:
        with app.test_request_context("/open311/v2/requests.json", method="POST", data=form):
            from flask import request

            request.form.to_dict()

    pings = _medians_ms(
        {
            f"{args.pings} pings ({len(body) / 1024:.0f} KiB): walk only": lambda: _first_bad(
                parsed
            ),
            f"{args.pings} pings: parse the body (what the view does anyway)": parse_only,
            f"{args.pings} pings: parse + guard": guard_json,
            f"{args.pings} pings: parse + walk always (no pre-check)": guard_json_always_walking,
        },
        args.repeats,
    )
    forms = _medians_ms(
        {
            "Open311 POST form (4,000-char description): parse": parse_form,
            "Open311 POST form: parse + guard": guard_form,
        },
        args.repeats * 10,
    )
    rows = [*pings.items(), *forms.items()]
    width = max(len(name) for name, _ in rows)
    print(
        f"median of {args.repeats} rounds (form rows: {args.repeats * 10}), Python {sys.version.split()[0]}"
    )
    for name, ms in rows:
        print(f"  {name:<{width}}  {ms:8.3f} ms")


if __name__ == "__main__":
    main()
