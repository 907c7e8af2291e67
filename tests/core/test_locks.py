"""Advisory lock classes come from one registry (core.locks), so two features can never
pick the same number again (sign-in limits once shared the shifts' class)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core import locks

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    p for d in ("api", "core", "dispatch", "geo", "workers") for p in (ROOT / d).rglob("*.py")
]
# A number of the registry's range anywhere but the registry: a lock class written as a
# literal (in a call, a constant, a tuple or a bound parameter) instead of AdvisoryLock.
LITERAL = re.compile(r"(?<![\d.])311\d\d(?!\d)")


def test_every_class_is_named_once() -> None:
    numbers = [v for k, v in vars(locks.AdvisoryLock).items() if k.isupper()]
    assert len(numbers) == len(set(numbers)) >= 8


def test_no_code_takes_an_advisory_lock_by_number() -> None:
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in SOURCES
        if p.name != "locks.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if LITERAL.search(line)
    ]
    assert found == []


def test_a_second_use_of_a_number_fails_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        locks.AdvisoryLock, "SOMETHING_NEW", locks.AdvisoryLock.SHIFTS, raising=False
    )
    with pytest.raises(RuntimeError, match="31103 is both SHIFTS and SOMETHING_NEW"):
        locks._check_unique()
