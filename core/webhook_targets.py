"""Where a webhook may point: public hosts, over https.

A webhook URL is chosen by whoever holds an Open311 client app's registration, and the
worker that calls it sits inside the city's network. Without limits, a URL such as
`http://169.254.169.254/…` or `http://10.0.0.5:5432/` makes the worker a proxy into that
network (server-side request forgery), and what the target answered, kept in the outbox,
would map it. So:

- the URL must use https, except for the hosts a setting names (`STREETLOOP_WEBHOOK_HTTP_HOSTS`);
- the address the worker connects to must be public: not loopback, private, link-local,
  multicast, reserved or unspecified, also when written as an IPv6 form that embeds such
  an IPv4 address (IPv4-mapped, NAT64, 6to4), unless `STREETLOOP_WEBHOOK_ALLOW_HOSTS`
  names the host, the address or a network holding it.

Registration checks what can be checked without DNS (the scheme, an address written as a
number in any spelling the C resolver accepts, names that are internal by definition);
`workers.delivery` resolves the name at each delivery, checks every address with
`check_address`, and connects to the checked address only, so a name that resolves to a
public address for the check and to an internal one a moment later (DNS rebinding) does
not get through either.

This module does no I/O. Its refusals are a short fixed vocabulary: they are what admins
read in `notifications.last_error`, and must not echo anything a target said.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from core.settings import Settings

type IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
type IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_SETTING = "STREETLOOP_WEBHOOK_ALLOW_HOSTS"
HTTP_SETTING = "STREETLOOP_WEBHOOK_HTTP_HOSTS"

# Names that can only lead inside a network: RFC 6761 (localhost), mDNS (.local), the
# private-use TLD (.internal), the home-network zone, and the usual resolver defaults.
# A name of a single label (`metadata`, `intranet`) is completed by the resolver's search
# domains, i.e. inside the city's own domain: it is refused too.
_INTERNAL_SUFFIXES = ("localhost", "local", "internal", "localdomain", "home.arpa")

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")

# The NAT64 well-known prefix (RFC 6052): the last 32 bits are an IPv4 address.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class Refusal:
    """Why a webhook may not be called; `reason` is one phrase of a fixed vocabulary."""

    reason: str
    # The address refused, as the packets would reach it (10.0.0.1 for 64:ff9b::a00:1).
    address: IPAddress | None = None

    def __str__(self) -> str:
        return f"refused: {self.reason}"


PLAIN_HTTP = Refusal("plain http")
INTERNAL_NAME = Refusal("internal host name")


def literal_address(host: str) -> IPAddress | None:
    """The address `host` stands for when it is written as one, else None (a name).

    Besides the usual notations, an IPv4 address is read the way the C resolver's
    inet_aton reads it (and hence getaddrinfo, curl and many HTTP clients): one to four
    parts, each decimal, octal with a leading 0 or hex with 0x, the last filling the
    remaining bytes, so `2130706433`, `0x7f.1`, `017700000001` and `127.1` are all
    127.0.0.1. `host` is a URL's host without brackets (`urlsplit(...).hostname`)."""
    host = host.strip().lower().removesuffix(".")
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return None
    return _inet_aton(host)


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        if re.fullmatch(r"0x[0-9a-f]*", part):
            values.append(int(part[2:] or "0", 16))
        elif re.fullmatch(r"0[0-7]*", part):
            values.append(int(part, 8))
        elif re.fullmatch(r"[1-9][0-9]*", part):
            values.append(int(part))
        else:
            return None
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << 8 * (4 - len(head)):
        return None
    number = 0
    for v in head:
        number = number << 8 | v
    return ipaddress.IPv4Address(number << 8 * (4 - len(head)) | last)


def _destination(address: IPAddress) -> IPAddress:
    """Where packets to `address` end up: the IPv4 address an IPv6 transition form carries
    (IPv4-mapped, NAT64 and 6to4), else the address itself. The carried address decides:
    a worker on an IPv6-only network with DNS64 sees every IPv4-only host as 64:ff9b::/96."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def address_refusal(address: IPAddress) -> Refusal | None:
    """Why `address` is no place for a webhook, or None when it is public. The order
    names the most telling reason (169.254.169.254 is private too, but link-local says more)."""
    a = _destination(address)
    if a.is_unspecified:
        return Refusal("unspecified address", a)
    if a.is_loopback:
        return Refusal("loopback address", a)
    if a.is_link_local:
        return Refusal("link-local address", a)
    if a.is_multicast:
        return Refusal("multicast address", a)
    if a.is_reserved:
        return Refusal("reserved address", a)
    if a.is_private:
        return Refusal("private address", a)
    # The few ranges that are neither private nor global: 100.64.0.0/10 (carrier-grade
    # NAT) is the carrier's own network.
    if not a.is_global:
        return Refusal("reserved address", a)
    return None


def _internal_name(name: str) -> bool:
    return "." not in name or any(name == s or name.endswith("." + s) for s in _INTERNAL_SUFFIXES)


def _host_name(entry: str) -> str | None:
    """`entry` as a lower-case DNS name, or None if it is not one."""
    name = entry.lower().removesuffix(".")
    if 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split(".")):
        return name
    return None


def parse_hosts(setting: str, raw: str, *, networks: bool) -> tuple[str, ...]:
    """A comma-separated list of host names and IP addresses (and networks in CIDR
    notation when `networks`), normalised; a bad entry stops start-up with the setting's name."""
    entries: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            net = ipaddress.ip_network(item.strip("[]"), strict=False)
        except ValueError:
            # `2130706433` is an address too, and is matched as one.
            literal = literal_address(item.strip("[]"))
            name = str(literal) if literal is not None else _host_name(item)
            if name is None:
                what = (
                    "host names, IP addresses or networks (CIDR)"
                    if networks
                    else "host names or IP addresses"
                )
                raise ValueError(
                    f"{setting} must be a comma-separated list of {what}, got {item!r}"
                ) from None
            entries.append(name)
            continue
        if net.num_addresses == 1:
            entries.append(str(net.network_address))
        elif networks:
            entries.append(str(net))
        else:
            raise ValueError(f"{setting} names hosts, not networks, got {item!r}")
    return tuple(dict.fromkeys(entries))


@dataclass(frozen=True)
class WebhookPolicy:
    """The checks, with the exceptions the settings make. Entries are normalised by
    `parse_hosts` (lower-case names, IP addresses in their usual notation)."""

    allow: frozenset[str] = frozenset()
    allow_networks: tuple[IPNetwork, ...] = ()
    http_hosts: frozenset[str] = frozenset()

    @classmethod
    def of(cls, allow_hosts: Iterable[str] = (), http_hosts: Iterable[str] = ()) -> WebhookPolicy:
        names, nets = set(), []
        for entry in allow_hosts:
            try:
                nets.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry)
        return cls(
            allow=frozenset(names), allow_networks=tuple(nets), http_hosts=frozenset(http_hosts)
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookPolicy:
        return cls.of(settings.webhook_allow_hosts, settings.webhook_http_hosts)

    def _allowed(self, name: str | None, address: IPAddress | None) -> bool:
        if name is not None and name in self.allow:
            return True
        if address is None:
            return False
        candidates = {address, _destination(address)}
        return any(
            a.version == net.version and a in net for a in candidates for net in self.allow_networks
        )

    def check_url(self, url: str) -> Refusal | None:
        """What can be told from the URL alone, without DNS: at registration, and again
        at each delivery (the settings may have changed since)."""
        parts = urlsplit(url)
        host = (parts.hostname or "").removesuffix(".")
        literal = literal_address(host)
        shown = str(literal) if literal is not None else host
        if parts.scheme != "https" and not (parts.scheme == "http" and shown in self.http_hosts):
            return PLAIN_HTTP
        if literal is not None:
            return self.check_address(host, literal)
        if _internal_name(host) and not self._allowed(host, None):
            return INTERNAL_NAME
        return None

    def check_address(self, host: str, address: IPAddress) -> Refusal | None:
        """Whether the worker may connect to `address`, which `host` resolved to."""
        refusal = address_refusal(address)
        if refusal is None or self._allowed(host.lower().removesuffix("."), address):
            return None
        return refusal
