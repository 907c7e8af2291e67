"""Outgoing HTTP from the worker to hosts outside StreetLoop (webhooks, copies of linked
photos): a host name is resolved once, by a resolver the caller may replace (tests map
made-up names to 127.0.0.1), the caller checks every address it gave, and the socket is
opened to a checked address only. TLS still proves the URL's host name (SNI and
certificate), and the Host header still names it."""

from __future__ import annotations

import functools
import http.client
import socket
import ssl
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from core.webhook_targets import IPAddress

type Resolver = Callable[[str, int], Iterable[str]]


def resolve_host(host: str, port: int) -> list[str]:
    """The system resolver's addresses for `host`, in its order of preference."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)))


def _open_socket(addresses: Sequence[IPAddress], port: int, timeout: float) -> socket.socket:
    """A TCP connection to the first of `addresses` that answers. A numeric address goes
    to connect() as it is: nothing here looks a name up."""
    error = OSError("no address to connect to")
    for address in addresses:
        sock = socket.socket(socket.AF_INET6 if address.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect((str(address), port))
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to `host` that opens its socket to addresses checked beforehand
    instead of resolving `host` again (which could answer differently: DNS rebinding)."""

    def __init__(self, host: str, port: int, addresses: Sequence[IPAddress], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._addresses = addresses

    def connect(self) -> None:
        sys.audit("http.client.connect", self, self.host, self.port)
        self.sock = _open_socket(self._addresses, self.port, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """The same for https: TCP to the checked address, then TLS for the URL's host name
    (SNI, and the certificate must be valid for that name, not for the address)."""

    def __init__(self, host: str, port: int, addresses: Sequence[IPAddress], timeout: float,
                 context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._addresses = addresses
        self._tls = context

    def connect(self) -> None:
        sys.audit("http.client.connect", self, self.host, self.port)
        sock = _open_socket(self._addresses, self.port, self.timeout)
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


@functools.cache
def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's CAs (and STREETLOOP_WEBHOOK_CA_FILE's), hostname checks on. Built once
    per CA file: loading the system's store takes a while, and a context can be shared."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def failure_words(exc: BaseException) -> str:
    """What admins read for a failed call: our own words, never the target's or the OS's
    (an error text may carry an internal service's banner or an address)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS error: certificate not accepted"
    if isinstance(exc, ssl.SSLError):
        return "TLS error"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "no reply"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "connection reset"
    if isinstance(exc, http.client.HTTPException):
        return "invalid HTTP reply"
    return "connection failed"


def pinned_connection(scheme: str, host: str, port: int, addresses: Sequence[IPAddress], timeout: float,
                      ca_file: Path | None = None) -> http.client.HTTPConnection:
    """An http or https connection to `host` that connects to `addresses` only."""
    if scheme == "https":
        return _PinnedHTTPSConnection(host, port, addresses, timeout, tls_context(ca_file))
    return _PinnedHTTPConnection(host, port, addresses, timeout)
