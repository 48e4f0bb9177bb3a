"""Imported labelled datasets and which one is the reference.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("source", sa.String(1000), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("is_reference", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_datasets_is_reference", "datasets", ["is_reference"])


def downgrade() -> None:
    op.drop_index("ix_datasets_is_reference", table_name="datasets")
    op.drop_table("datasets")
