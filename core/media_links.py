"""Photo links a report came with (Open311's `media_url`), and which of them StreetLoop
may copy into its own storage.

FixMyStreet sends its photos as links by default (one media_url, or several with its
`multi_photos` option). Every link is kept, in the order sent (`MediaLink`), and shown to
the crew as a link. A link is fetched, and its photo stored like an upload, only when its
host is one an admin listed in STREETLOOP_MEDIA_COPY_HOSTS (the city's own FixMyStreet):
a link is written by whoever sends the report, and the worker that would fetch it sits
inside the city's network (see `workers.media_copy` for the fetch and its guards).

This module does no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from core.errors import ValidationFailed
from core.webhook_targets import IPAddress, address_refusal, literal_address

if TYPE_CHECKING:
    from core.settings import Settings

COPY_HOSTS_SETTING = "STREETLOOP_MEDIA_COPY_HOSTS"
COPY_HTTP_HOSTS_SETTING = "STREETLOOP_MEDIA_COPY_HTTP_HOSTS"
COPY_INTERNAL_SETTING = "STREETLOOP_MEDIA_COPY_ALLOW_INTERNAL"

MAX_URL_LENGTH = 2048
# Spaces, control characters and backslashes have no place in a URL a client means: a
# browser or HTTP library would "repair" them, each its own way.
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")


def _is_web_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not one
    except ValueError:
        return False
    return (
        parts.scheme.lower() in ("http", "https")
        and bool(parts.hostname)
        and not _UNSAFE.search(url)
    )


def clean_media_links(values: Iterable[str | None], *, limit: int) -> list[str]:
    """The report's links as kept: stripped, empty ones dropped, each an absolute http(s)
    URL of at most MAX_URL_LENGTH characters, repeats dropped (first place kept), at most
    `limit`. Raises ValidationFailed naming media_url."""
    links: list[str] = []
    for raw in values:
        url = (raw or "").strip()
        if not url:
            continue
        if len(url) > MAX_URL_LENGTH:
            raise ValidationFailed(
                f"media_url is longer than {MAX_URL_LENGTH} characters", field="media_url"
            )
        if not _is_web_url(url):
            raise ValidationFailed(
                "media_url must be an http(s) URL with a host, such as https://example.org/photo.jpg, "
                "without spaces",
                field="media_url",
            )
        if url not in links:
            links.append(url)
    if len(links) > limit:
        raise ValidationFailed(
            f"at most {limit} media_url values per report, got {len(links)}", field="media_url"
        )
    return links


# What STREETLOOP_MEDIA_COPY_ALLOW_INTERNAL allows, among `address_refusal`'s reasons
# (which names link-local before private: 169.254.0.0/16 is both).
_INTERNAL_REASONS = frozenset({"loopback address", "private address"})


def copy_job_lock(link_id: int) -> str:
    """The queueing lock of a link's copy job: one job waiting per link, however often the
    sweep finds it pending while a slow queue has not run the first one yet."""
    return f"copy_media_link:{link_id}"


def _host_of(url: str) -> str:
    host = (urlsplit(url).hostname or "").removesuffix(".")
    literal = literal_address(host)
    return str(literal) if literal is not None else host


@dataclass(frozen=True)
class CopyPolicy:
    """Which links the worker may fetch, and where it may connect for them.

    - `hosts`: the only hosts fetched from (STREETLOOP_MEDIA_COPY_HOSTS; empty: none);
    - https only, except the listed hosts of `http_hosts` (STREETLOOP_MEDIA_COPY_HTTP_HOSTS,
      each of which must be in `hosts` too): a photo fetched over plain http could have
      been swapped on the way;
    - the addresses a host resolves to must be public, unless `allow_internal`
      (STREETLOOP_MEDIA_COPY_ALLOW_INTERNAL, for a FixMyStreet on the city's own network,
      and for tests): a listed name whose DNS is taken over must not lead the worker
      into the city's network. That setting allows loopback and private addresses only:
      link-local ones (169.254.169.254 is the cloud's metadata service), unspecified,
      multicast and reserved ones stay refused, as no FixMyStreet is ever found there."""

    hosts: frozenset[str] = frozenset()
    http_hosts: frozenset[str] = frozenset()
    allow_internal: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> CopyPolicy:
        return cls(
            hosts=frozenset(settings.media_copy_hosts),
            http_hosts=frozenset(settings.media_copy_http_hosts),
            allow_internal=settings.media_copy_allow_internal,
        )

    def allows(self, url: str) -> bool:
        """Whether the link is one to copy: its host listed, its scheme allowed for it."""
        return self.refusal(url) is None

    def refusal(self, url: str) -> str | None:
        """Why the link is not fetched, in a fixed vocabulary (what admins read), or None."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018
        except ValueError:
            return "invalid URL"
        host = _host_of(url)
        if host not in self.hosts:
            return "host not allowed"
        if parts.scheme.lower() == "https":
            return None
        if parts.scheme.lower() == "http" and host in self.http_hosts:
            return None
        return "plain http"

    def address_refusal(self, address: IPAddress) -> str | None:
        """Whether the worker may connect to `address`, which a listed host resolved to."""
        refusal = address_refusal(address)
        if refusal is None or (self.allow_internal and refusal.reason in _INTERNAL_REASONS):
            return None
        return refusal.reason
