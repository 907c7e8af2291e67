"""Fixtures of the dispatch tests; their small instances are built with tests/factories/problems.py."""

from __future__ import annotations

import pytest


@pytest.fixture
def fast():
    from dispatch.solver import SolveParams

    return SolveParams(time_limit_s=0.5, workers=1)
