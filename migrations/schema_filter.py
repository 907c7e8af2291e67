"""What autogenerate compares: our tables, not PostGIS's or procrastinate's."""

from __future__ import annotations

from geoalchemy2 import alembic_helpers

# Tables owned by extensions or by procrastinate's own schema are not ours to diff.
FOREIGN_TABLES = {"spatial_ref_sys"}


def include_object(obj, name, type_, reflected, compare_to):  # noqa: ANN001
    if type_ == "table" and (name in FOREIGN_TABLES or (name or "").startswith("procrastinate_")):
        return False
    if type_ in {"index", "column", "unique_constraint", "foreign_key_constraint"}:
        table = getattr(obj, "table", None)
        if table is not None and (
            table.name in FOREIGN_TABLES or table.name.startswith("procrastinate_")
        ):
            return False
    return alembic_helpers.include_object(obj, name, type_, reflected, compare_to)
