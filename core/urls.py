"""Links handed to the world outside: a path of ours made absolute on the public base URL.

Stored links are of two kinds: a path on this server ("/media/public/photos/…", a photo
we serve) and an absolute http(s) URL (a resident's photo link on a client's site,
checked at intake by `core.media_links.clean_media_links`). Open311, the e-mails and the
webhooks hand them out through `absolute_url`, so each says the same link."""

from __future__ import annotations


def absolute_url(url: str | None, base: str) -> str | None:
    """`url` as a reader elsewhere can follow it: a path of ours on `base` (the public base
    URL, no trailing slash), any other URL as it is. None for no link, and for a path when
    there is no base to put it on (a relative link in an e-mail leads nowhere)."""
    if not url:
        return None
    if url.startswith("/"):
        return base + url if base else None
    return url
