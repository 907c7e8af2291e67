"""basemap: the city's streets, water, parks and buildings for the offline map tiles

- `basemap_features` holds what `streetloop basemap build` imports from the city's OSM
  extract, in Web Mercator (EPSG:3857, the tiles' projection), with the first zoom each
  is drawn at; `/tiles/{z}/{x}/{y}.pbf` cuts vector tiles from it.
- `basemap_build` (one row at most) says what it was built from and when; no row means
  no basemap, and the maps show a plain background.
  Nothing to fill: the basemap is built by the command.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 01:15:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

from migrations.ops import (
    create_geospatial_index,
    create_geospatial_table,
    drop_geospatial_index,
    drop_geospatial_table,
)

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LAYERS = ("water", "landuse", "buildings", "waterways", "railways", "roads", "places")


def upgrade() -> None:
    create_geospatial_table(
        "basemap_features",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("layer", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("min_zoom", sa.SmallInteger(), nullable=False),
        sa.Column("area", sa.Float(), nullable=False),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="GEOMETRY",
                srid=3857,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.CheckConstraint(
            "layer IN (" + ", ".join(f"'{layer}'" for layer in LAYERS) + ")",
            name=op.f("ck_basemap_features_layer"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_basemap_features")),
    )
    create_geospatial_index(
        "ix_basemap_features_geom",
        "basemap_features",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_table(
        "basemap_build",
        sa.Column("id", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("source", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("features", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("bounds", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "built_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint("id = 1", name=op.f("ck_basemap_build_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_basemap_build")),
    )


def downgrade() -> None:
    op.drop_table("basemap_build")
    drop_geospatial_index(
        "ix_basemap_features_geom",
        table_name="basemap_features",
        postgresql_using="gist",
        column_name="geom",
    )
    drop_geospatial_table("basemap_features")
