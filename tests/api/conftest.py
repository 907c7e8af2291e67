"""Fixtures shared by the /api/v1 tests."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from tests import factories as f


@pytest.fixture
def admin(db: Session) -> dict[str, str]:
    """Authorization headers of an admin user."""
    return f.token_for(db, f.user(db, "admin@example.org", "admin"))
