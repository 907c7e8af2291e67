"""Open311 client apps: their API keys (active → revoked, for good) and the webhooks an
admin registers for them (active ⇄ inactive: registering a URL again switches it back on
with a fresh secret). The audit trail says who let an app in, where its notifications go,
and who cut it off."""

from __future__ import annotations

from core.lifecycle.base import StateMachine


class ApiKeyLifecycle(StateMachine):
    entity = "api_key"
    transitions = {
        "active": frozenset({"revoked"}),
        # A leaked key stays dead: the app gets a new one.
        "revoked": frozenset(),
    }


class WebhookLifecycle(StateMachine):
    entity = "webhook"
    transitions = {
        "active": frozenset({"inactive"}),
        "inactive": frozenset({"active"}),
    }
