"""Client apps' webhooks: where status changes of the requests an app submitted are POSTed."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from marshmallow import Schema, ValidationError, fields, validate, validates
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api.auth import current_actor, require
from api.db import session, settings
from api.errors import abort
from api.resources.common import Blueprint
from core.lifecycle.client_app import WebhookLifecycle
from core.models import ApiKey, Webhook
from core.webhook_targets import ALLOW_SETTING, HTTP_SETTING, PLAIN_HTTP, WebhookPolicy

blp = Blueprint(
    "webhooks",
    __name__,
    description=(
        "Webhooks of Open311 client apps. Each status change of a request the app submitted "
        "(scheduled, fixed, closed, reopened) is POSTed as JSON with the header "
        "`X-StreetLoop-Signature: sha256=<HMAC-SHA256 of the body with the webhook's secret>` "
        "and `X-StreetLoop-Delivery: <id>` (the same on retries); any 2xx answer counts as delivered."
    ),
)


class WebhookSchema(Schema):
    id = fields.Integer(dump_only=True)
    api_key_id = fields.Integer(dump_only=True)
    url = fields.URL(
        required=True,
        schemes={"http", "https"},
        require_tld=False,
        validate=validate.Length(max=2048),
        metadata={
            "description": "https URL of a public host that receives the POSTs (plain http and "
            "internal hosts only where the city's settings allow them)"
        },
    )
    active = fields.Boolean(dump_only=True)
    created_at = fields.DateTime(dump_only=True)

    @validates("url")
    def _no_credentials(self, value: str, **kwargs: Any) -> None:
        # The URL is listed to every admin and written to the outbox: no passwords in it.
        if urlsplit(value).password is not None or "@" in urlsplit(value).netloc:
            raise ValidationError(
                "put no credentials in the URL; verify deliveries with the signature instead"
            )

    @validates("url")
    def _public_https_only(self, value: str, **kwargs: Any) -> None:
        # The worker calls it from inside the city's network: see core/webhook_targets.py.
        # Names are resolved, and checked again, at each delivery; here nothing is looked up.
        refusal = WebhookPolicy.from_settings(settings()).check_url(value)
        if refusal is None:
            return
        if refusal == PLAIN_HTTP:
            raise ValidationError(
                f"use https; plain http is allowed only for the hosts in {HTTP_SETTING}"
            )
        host = urlsplit(value).hostname or ""
        if refusal.address is not None and str(refusal.address) != host:
            host += f" ({refusal.address})"  # 2130706433 (127.0.0.1)
        article = "an" if refusal.reason[0] in "aeiou" else "a"
        raise ValidationError(
            f"{host} is {article} {refusal.reason}; webhooks may call only public hosts, "
            f"or those in {ALLOW_SETTING}"
        )


class NewWebhookSchema(WebhookSchema):
    secret = fields.String(
        dump_only=True, metadata={"description": "shown once: the key for X-StreetLoop-Signature"}
    )


def _without_query(url: str) -> str:
    """The URL for the audit trail, which every admin reads: it keeps where calls go, not
    a token a client app may have put in the query string."""
    parts = urlsplit(url)
    if not parts.query and not parts.fragment:
        return url
    return parts._replace(query="", fragment="").geturl() + " (its query left out)"


def _key(key_id: int) -> ApiKey:
    key = session().get(ApiKey, key_id)
    if key is None:
        abort(404, message=f"api key {key_id} not found")
    return key


@blp.route("/api-keys/<int:key_id>/webhooks")
@require("admin")
@blp.response(200, WebhookSchema(many=True))
@blp.error(404)
@blp.doc(operationId="listWebhooks")
def list_webhooks(key_id: int) -> Any:
    _key(key_id)
    return (
        session()
        .scalars(select(Webhook).where(Webhook.api_key_id == key_id).order_by(Webhook.id))
        .all()
    )


@blp.route("/api-keys/<int:key_id>/webhooks", methods=["POST"])
@require("admin")
@blp.arguments(WebhookSchema)
@blp.response(201, NewWebhookSchema)
@blp.error(409, "The URL is already registered for this key, or the key is revoked")
@blp.error(404)
@blp.doc(operationId="createWebhook")
def create_webhook(data: dict[str, Any], key_id: int) -> Any:
    s = session()
    key = _key(key_id)
    # Locked as revoking locks it: a registration racing a revocation either comes first
    # (and is switched off with the key) or sees the key revoked.
    s.refresh(key, with_for_update={"read": True})
    if not key.active:
        abort(409, message=f"api key {key_id} is revoked")
    hook = s.scalar(
        select(Webhook)
        .where(Webhook.api_key_id == key_id, Webhook.url == data["url"])
        .with_for_update()
    )
    if hook is not None and hook.active:
        abort(
            409,
            message=f"{data['url']} is already registered for api key {key_id} (webhook {hook.id})",
        )
    secret = secrets.token_hex(32)
    actor = current_actor()
    if hook is None:
        hook = Webhook(api_key_id=key_id, url=data["url"], secret=secret, active=True)
        s.add(hook)
        try:
            # A savepoint: losing the race for the URL leaves nothing half-written.
            with s.begin_nested():
                s.flush()
        except IntegrityError:
            # Another admin registered the same URL a moment ago.
            abort(409, message=f"{data['url']} is already registered for api key {key_id}")
        WebhookLifecycle.record_creation(
            s, hook, actor=actor, note=f"registered: {_without_query(hook.url)}"
        )
    else:
        # Registering a deactivated URL again switches it back on with a fresh secret
        # (the old one may be why it was switched off).
        hook.secret = secret
        WebhookLifecycle.transition(
            s, hook, "active", actor=actor, note="registered again, with a new secret"
        )
    s.commit()
    return {
        "id": hook.id,
        "api_key_id": key_id,
        "url": hook.url,
        "active": hook.active,
        "created_at": hook.created_at,
        "secret": secret,
    }


@blp.route("/webhooks/<int:webhook_id>", methods=["DELETE"])
@require("admin")
@blp.response(204)
@blp.error(404)
@blp.doc(operationId="deactivateWebhook")
def deactivate_webhook(webhook_id: int) -> None:
    """Stop calling it; deliveries still waiting for it are given up, not sent."""
    s = session()
    hook = s.get(Webhook, webhook_id)
    if hook is None:
        abort(404, message=f"webhook {webhook_id} not found")
    if hook.active:
        WebhookLifecycle.transition(s, hook, "inactive", actor=current_actor(), note="switched off")
    s.commit()
