"""Open311 client apps: their API keys (active → revoked, for good) and the webhooks an
admin registers for them (active ⇄ inactive: registering a URL again switches it back on
with a fresh secret). The audit trail says who let an app in, where its notifications go,
and who cut it off."""

from __future__ import annotations

from core.lifecycle.base import StateMachine
from core.status import ApiKeyStatus, WebhookStatus


class ApiKeyLifecycle(StateMachine):
    entity = "api_key"
    transitions = {
        ApiKeyStatus.ACTIVE: frozenset({ApiKeyStatus.REVOKED}),
        # A leaked key stays dead: the app gets a new one.
        ApiKeyStatus.REVOKED: frozenset(),
    }


class WebhookLifecycle(StateMachine):
    entity = "webhook"
    transitions = {
        WebhookStatus.ACTIVE: frozenset({WebhookStatus.INACTIVE}),
        WebhookStatus.INACTIVE: frozenset({WebhookStatus.ACTIVE}),
    }
