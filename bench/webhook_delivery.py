"""What the webhook checks cost: one POST the old way (urllib, no checks) and the new way
(checked, resolved once, connected to the checked address), side by side in one run.

    python bench/webhook_delivery.py [--iterations 500] [--warmup 50]

Everything stays on 127.0.0.1: an http and an https endpoint (a throwaway CA from trustme)
run in this process; the https URL's name is answered by an injected resolver. No
database is needed. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import trustme  # noqa: E402

from core import notifications as outbox  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.webhook_targets import WebhookPolicy  # noqa: E402
from workers import delivery  # noqa: E402

BODY = b'{"event":"closed","service_request_id":"1234","status":"closed"}'
HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": "StreetLoop-Webhook/1",
    "X-StreetLoop-Delivery": "1",
}


class Handler(BaseHTTPRequestHandler):
    # One connection per call, as the worker makes them.
    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def serve(tls: ssl.SSLContext | None = None) -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def old_poster(context: ssl.SSLContext | None = None) -> Callable[[str], None]:
    """The previous `post_webhook`: urllib with one opener (its https handler keeps one
    TLS context, as the old module-level opener did), no checks, the system resolver."""
    handlers: list[object] = [_NoRedirects]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)

    def post(url: str) -> None:
        req = urllib.request.Request(url, data=BODY, headers=HEADERS, method="POST")
        with opener.open(req, timeout=10) as response:
            assert response.status == 204

    return post


def timed(fn: Callable[[], object], iterations: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iterations):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def row(name: str, samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=100)
    return f"| {name} | {statistics.median(samples):.3f} | {q[89]:.3f} | {q[98]:.3f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()

    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.example.org", "127.0.0.1").configure_cert(server_tls)
    http_server, http_port = serve()
    https_server, https_port = serve(server_tls)
    with tempfile.TemporaryDirectory() as tmp:
        ca_file = Path(tmp) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        old_http, old_https = (
            old_poster(),
            old_poster(ssl.create_default_context(cafile=str(ca_file))),
        )
        settings = Settings(
            database_url="postgresql+psycopg://unused/unused",
            webhook_allow_hosts=("127.0.0.1",),
            webhook_http_hosts=("127.0.0.1",),
            webhook_ca_file=ca_file,
        )
        http_url = f"http://127.0.0.1:{http_port}/hook"
        # The old code resolves names itself: it gets the address (the certificate names
        # 127.0.0.1 too), the new one the name and an injected answer.
        https_ip_url = f"https://127.0.0.1:{https_port}/hook"
        https_name_url = f"https://hooks.example.org:{https_port}/hook"

        def new_post(url: str) -> Callable[[], object]:
            call = outbox.WebhookRequest(url=url, body=BODY, headers=HEADERS)
            return lambda: delivery.post_webhook(
                call, settings, resolve=lambda host, port: ["127.0.0.1"]
            )

        policy = WebhookPolicy.from_settings(settings)
        address = ip_address("93.184.215.14")

        def checks_only() -> None:
            WebhookPolicy.from_settings(settings).check_url("https://hooks.example.org/hook")
            policy.check_address("hooks.example.org", address)

        print(
            f"{args.iterations} calls each after {args.warmup} warm-up calls, one connection per call; ms"
        )
        print()
        print("| what | p50 | p90 | p99 |")
        print("|---|---:|---:|---:|")
        # Interleaved in rounds, so both sides see the same machine load.
        results: dict[str, list[float]] = {
            k: [] for k in ("old http", "new http", "old https", "new https", "checks", "ctx")
        }
        rounds = 5
        per = max(args.iterations // rounds, 1)
        for _ in range(rounds):
            results["old http"] += timed(lambda: old_http(http_url), per, args.warmup // rounds)
            results["new http"] += timed(new_post(http_url), per, args.warmup // rounds)
            results["old https"] += timed(
                lambda: old_https(https_ip_url), per, args.warmup // rounds
            )
            results["new https"] += timed(new_post(https_name_url), per, args.warmup // rounds)
            results["checks"] += timed(checks_only, per * 10, args.warmup)
            results["ctx"] += timed(
                lambda: delivery._tls_context.__wrapped__(ca_file), max(per // 10, 5), 1
            )
        print(row("old: urllib POST, http, no checks", results["old http"]))
        print(row("new: checked, pinned POST, http", results["new http"]))
        print(row("old: urllib POST, https (context built once)", results["old https"]))
        print(row("new: checked, pinned POST, https (cached TLS context)", results["new https"]))
        print(row("the checks alone (URL + one address)", results["checks"]))
        print(
            row(
                "building the TLS context, system CAs + CA file (saved by the cache)",
                results["ctx"],
            )
        )
    http_server.shutdown()
    https_server.shutdown()


if __name__ == "__main__":
    main()
