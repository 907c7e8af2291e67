"""One state machine per entity. Every transition writes its StatusEvent in the
caller's transaction; an illegal transition raises and writes nothing."""

from core.lifecycle.base import Actor, StateMachine

__all__ = ["Actor", "StateMachine"]
