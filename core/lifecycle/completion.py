"""Completion verdict: what the proof checks said, then what a supervisor decided.

auto_verified is final. needs_review (doubtful proof, or drawn for an audit) waits for a
supervisor: verified (the work stands, or is closed with another outcome) or rejected
(the work order goes back to the pool)."""

from __future__ import annotations

from core.lifecycle.base import StateMachine
from core.status import Verdict


class CompletionLifecycle(StateMachine):
    entity = "completion"
    state_attr = "verdict"
    transitions = {
        Verdict.NEEDS_REVIEW: frozenset({Verdict.VERIFIED, Verdict.REJECTED}),
        Verdict.AUTO_VERIFIED: frozenset(),
        Verdict.VERIFIED: frozenset(),
        Verdict.REJECTED: frozenset(),
    }
