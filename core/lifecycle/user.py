"""User accounts: active ⇄ inactive.

Role changes, renames and password resets keep the state; they are annotated, so the
account's timeline says who changed what. Notes never hold a password or its hash."""

from __future__ import annotations

from core.lifecycle.base import StateMachine
from core.status import UserStatus


class UserLifecycle(StateMachine):
    entity = "user"
    transitions = {
        UserStatus.ACTIVE: frozenset({UserStatus.INACTIVE}),
        UserStatus.INACTIVE: frozenset({UserStatus.ACTIVE}),
    }
