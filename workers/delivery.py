"""Sending the notification outbox: the transports (SMTP, HTTPS webhooks) and the
transaction choreography around each send. What to send and what an attempt does to the
row is `core.notifications`; this module is the part that talks to the network.

Exactly once, as far as it can be had:
- the outbox has one row per (status event, channel, recipient) (a unique constraint),
  so an event is never queued twice for the same person or app;
- a worker leases one row at a time (`FOR UPDATE SKIP LOCKED`, state `sending`, lease
  committed before the send), so two workers never send the same row at once;
- each e-mail carries a Message-ID derived from the row, each webhook call the header
  `X-StreetLoop-Delivery: <row id>`, identical on every retry.

The window that remains, honestly: a send that succeeded but whose `sent` mark was not
committed (the worker crashed or lost the database in between, or the SMTP server took
the message but the connection dropped before its 250 reply) is sent again after the
lease runs out. Delivery is at-least-once; receivers that keep the Message-ID / delivery
id see it as a duplicate. The reverse never happens: a row is marked `sent` only after
the server accepted it.
"""

from __future__ import annotations

import http.client
import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from urllib.parse import urlsplit

from sqlalchemy.orm import Session, sessionmaker

from core import notifications as outbox
from core.db import existing
from core.models import Notification
from core.settings import Settings
from core.webhook_targets import IPAddress, WebhookPolicy
from workers.outbound import (
    Resolver,
    Unreachable,
    checked_addresses,
    pinned_connection,
    resolve_host,
)
from workers.outbound import failure_words as _failure

log = logging.getLogger(__name__)

SMTP_TIMEOUT_S = 30.0
WEBHOOK_TIMEOUT_S = 10.0
# Jobs stay short; a larger backlog is finished by the next job or sweep.
BATCH_LIMIT = 200


class DeliveryError(Exception):
    """A send that did not go through; `permanent` ones are not retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def send_email(settings: Settings, msg: EmailMessage, *, timeout: float = SMTP_TIMEOUT_S) -> None:
    """Hand one message to the configured SMTP server (port 465: TLS from the start)."""
    try:
        if settings.smtp_port == 465:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.smtp_host,
                settings.smtp_port,
                timeout=timeout,
                context=ssl.create_default_context(),
            )
        else:
            smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
        with smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password)
            smtp.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = {code for code, _ in exc.recipients.values()}
        # The address is on the row already; logs need not carry it.
        detail = "; ".join(
            f"{code} {reply.decode(errors='replace')}" for code, reply in exc.recipients.values()
        )
        # 5xx for the mailbox: asking again will not change the answer.
        raise DeliveryError(
            f"recipient refused: {detail}", permanent=all(c >= 500 for c in codes)
        ) from exc
    except smtplib.SMTPResponseException as exc:
        # A server's reply is bytes; smtplib's own refusals (a reply line over its limit) are text.
        reason = exc.smtp_error
        text = reason.decode(errors="replace") if isinstance(reason, bytes) else reason
        raise DeliveryError(f"SMTP {exc.smtp_code}: {text}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP {settings.smtp_host}:{settings.smtp_port}: {exc!r}") from exc


# -- webhooks: public hosts only, at the address that was checked ------------------------
#
# A webhook's URL comes from outside the city, and this worker runs inside its network.
# `core.webhook_targets` says which URLs and addresses are allowed; this part makes sure
# the call goes exactly there: the name is resolved once, every address it gave is
# checked, and the socket is opened to a checked address. TLS still proves the URL's host
# name (SNI and certificate), and the Host header still names it (see workers/outbound.py).


def post_webhook(
    request: outbox.WebhookRequest,
    settings: Settings,
    *,
    resolve: Resolver = resolve_host,
    timeout: float | None = None,
) -> int:
    """POST the signed body; any 2xx is delivered, anything else raises (and is retried,
    except refusals: the URL or its addresses are not allowed, and asking again will not
    change that). Redirects are not followed: that would turn the POST into a body-less
    GET, to a host nobody checked."""
    timeout = WEBHOOK_TIMEOUT_S if timeout is None else timeout
    policy = WebhookPolicy.from_settings(settings)
    refusal = policy.check_url(request.url)
    if refusal is not None:
        raise DeliveryError(str(refusal), permanent=True)
    parts = urlsplit(request.url)
    try:
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port out of range
        raise DeliveryError("invalid URL", permanent=True) from None

    def check(address: IPAddress) -> str | None:
        refusal = policy.check_address(host, address)
        return None if refusal is None else refusal.reason

    try:
        addresses = checked_addresses(host, port, resolve, check)
    except Unreachable as exc:
        # A name not found may be found later (retried); a refused address stays refused.
        raise DeliveryError(exc.reason, permanent=exc.refused) from None

    conn = pinned_connection(parts.scheme, host, port, addresses, timeout, settings.webhook_ca_file)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", target, body=request.body, headers=request.headers)
        # The status is all we keep: the body is neither read nor stored.
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(_failure(exc)) from exc
    finally:
        conn.close()
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status}")
    return status


@dataclass
class DeliveryRun:
    """What one delivery run did, by row id."""

    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    # Rows whose lease ran out while we were sending (another worker has them now).
    lost: list[int] = field(default_factory=list)


_warned_no_smtp = False


def _channels(session: Session, settings: Settings, now: datetime | None) -> tuple[str, ...]:
    global _warned_no_smtp
    if settings.smtp_host:
        return ("email", "webhook")
    # Without a mail server the e-mails wait in the outbox (not `failed`: nothing was
    # tried); they go out once STREETLOOP_SMTP_HOST is set.
    if not _warned_no_smtp and outbox.due_count(session, "email", now):
        log.warning(
            "e-mail notifications are waiting in the outbox: STREETLOOP_SMTP_HOST is not set"
        )
        _warned_no_smtp = True
    return ("webhook",)


def _compose(
    session: Session, settings: Settings, claimed: outbox.Claim, now: datetime | None
) -> EmailMessage | outbox.WebhookRequest:
    # Claimed a moment ago, and outbox rows are never deleted.
    row = existing(session, Notification, claimed.notification_id)
    if claimed.channel == "email":
        return outbox.email_message(session, row, settings, now=now)
    return outbox.webhook_request(session, row, settings)


def _transmit(
    settings: Settings, outgoing: EmailMessage | outbox.WebhookRequest, resolve: Resolver
) -> None:
    if isinstance(outgoing, EmailMessage):
        send_email(settings, outgoing)
    else:
        post_webhook(outgoing, settings, resolve=resolve)


def deliver_one(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    now: datetime | None = None,
    run: DeliveryRun | None = None,
    resolve: Resolver = resolve_host,
) -> bool:
    """Lease, send and record one due row; False when nothing is due. `resolve` looks up
    webhooks' host names (tests give the answers)."""
    run = run if run is not None else DeliveryRun()
    with sessions.begin() as session:
        claimed = outbox.claim(session, channels=_channels(session, settings, now), now=now)
    if claimed is None:
        return False
    error: DeliveryError | None = None
    try:
        with sessions() as session:
            outgoing = _compose(session, settings, claimed, now)
        # The lease is committed and the session closed: no transaction stays open
        # while a slow mail server or app makes us wait.
        _transmit(settings, outgoing, resolve)
    except DeliveryError as exc:
        error = exc
    except outbox.Undeliverable as exc:
        error = DeliveryError(str(exc), permanent=True)
    except Exception as exc:
        # A bug in composing one message must not stall the outbox: the row is retried
        # with backoff like any failure and ends as `failed`.
        # Its text stays in the log: it may quote what a target sent.
        log.exception("notification %s could not be sent", claimed.notification_id)
        error = DeliveryError(f"internal error ({type(exc).__name__}; see the worker's log)")
    with sessions.begin() as session:
        if error is None:
            ok = outbox.record_sent(session, claimed, now=now)
            (run.sent if ok else run.lost).append(claimed.notification_id)
            return True
        state = outbox.record_failure(
            session, claimed, str(error), permanent=error.permanent, now=now
        )
    log.warning(
        "notification %s (%s) attempt %d: %s",
        claimed.notification_id,
        claimed.channel,
        claimed.attempt,
        error,
    )
    {"pending": run.retrying, "failed": run.failed, None: run.lost}[state].append(
        claimed.notification_id
    )
    return True


def deliver_due(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    now: datetime | None = None,
    limit: int = BATCH_LIMIT,
    resolve: Resolver = resolve_host,
) -> DeliveryRun:
    """Send due outbox rows, one lease at a time, until none is due or `limit` were tried.

    `now` pins the clock (tests); by default every claim uses the database's clock."""
    run = DeliveryRun()
    for _ in range(limit):
        if not deliver_one(sessions, settings, now=now, run=run, resolve=resolve):
            break
    if run.sent or run.retrying or run.failed or run.lost:
        log.info(
            "notifications: %d sent, %d to retry, %d failed, %d leases lost",
            len(run.sent),
            len(run.retrying),
            len(run.failed),
            len(run.lost),
        )
    return run
