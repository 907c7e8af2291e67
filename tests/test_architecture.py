"""The rooms' import rules (docs/ARCHITECTURE.md), checked on the source itself.

A rule here is a promise the layout makes to the next engineer: that the domain can be used
without Flask, that the solver engine can be swapped in one package, that reports read and
never write through a view. A new import that breaks one fails this test with the file and
line, and the fix is to move the code, not to add an exception.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("api", "core", "dispatch", "geo", "workers", "screens", "demo", "reports", "migrations")

# What each room may import of the others. A room always may import itself.
MAY_IMPORT: dict[str, set[str]] = {
    "core": {"geo"},  # only geo's pure functions: see PURE_GEO below
    "geo": {"core"},  # only core's data: see GEO_MAY_USE below
    "dispatch": {"core", "geo"},
    "workers": {"core", "geo", "dispatch"},
    "reports": {"core"},
    "demo": {"core", "geo", "dispatch"},
    "migrations": {"core"},
    "screens": set(),
    # The CLI runs migrations (`streetloop db upgrade`) under their lock.
    "api": {"core", "geo", "dispatch", "workers", "reports", "demo", "screens", "migrations"},
}

# geo computes; it may read core's types and settings, never run a workflow.
GEO_MAY_USE = {
    "core.status",
    "core.models",
    "core.settings",
    "core.spatial",
    "core.storage",
    "core.errors",
}
# The geo modules core may call: pure functions (no session, no lifecycle).
PURE_GEO = {"geo.proof", "geo.photos", "geo.earth", "geo.travel"}

# Third-party packages that belong to one room only.
ONLY_IN = {
    "flask": {"api", "screens"},
    "flask_smorest": {"api"},
    "werkzeug": {"api", "screens"},
    "ortools": {"dispatch/solver/"},
    "vroom": {"dispatch/solver/"},
}


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} imports {self.module}"


def _imports() -> list[Import]:
    found = []
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found += [Import(path, node.lineno, alias.name) for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.append(Import(path, node.lineno, node.module))
                    # `from geo import proof` names the module geo.proof.
                    found += [
                        Import(path, node.lineno, f"{node.module}.{alias.name}")
                        for alias in node.names
                        if node.module in ROOMS
                    ]
    return found


IMPORTS = _imports()


def _room(imp: Import) -> str:
    return imp.path.relative_to(ROOT).parts[0]


def _within(module: str, allowed: set[str]) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allowed)


def test_the_rules_read_real_imports() -> None:
    # A rule that matches nothing proves nothing: the scan sees the imports it checks.
    assert any(i.module.startswith("ortools") for i in IMPORTS)
    assert any(_room(i) == "api" and i.module.startswith("flask") for i in IMPORTS)
    assert any(_room(i) == "core" and i.module.startswith("geo.") for i in IMPORTS)


def test_each_room_imports_only_the_rooms_below_it() -> None:
    broken = [
        str(i)
        for i in IMPORTS
        if (top := i.module.split(".")[0]) in ROOMS
        and top != _room(i)
        and top not in MAY_IMPORT[_room(i)]
    ]
    assert broken == []


def test_core_calls_only_geos_pure_functions() -> None:
    broken = [
        str(i)
        for i in IMPORTS
        if _room(i) == "core" and i.module.startswith("geo.") and not _within(i.module, PURE_GEO)
    ]
    assert broken == []


def test_geo_reads_core_but_runs_no_workflow() -> None:
    broken = [
        str(i)
        for i in IMPORTS
        if _room(i) == "geo" and i.module.startswith("core.") and not _within(i.module, GEO_MAY_USE)
    ]
    assert broken == []


@pytest.mark.parametrize("package", sorted(ONLY_IN))
def test_a_framework_or_engine_stays_in_its_room(package: str) -> None:
    allowed = ONLY_IN[package]
    broken = [
        str(i)
        for i in IMPORTS
        if i.module.split(".")[0] == package
        and not any(str(i.path.relative_to(ROOT)).startswith(a) for a in allowed)
    ]
    assert broken == []
