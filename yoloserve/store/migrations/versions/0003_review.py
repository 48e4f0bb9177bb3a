"""The gateway's review queue: its items and the admissions its rate limit counts.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_items",
        sa.Column("review_id", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("model_version", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("boxes", sa.JSON(), nullable=False),
        sa.Column("image_file", sa.String(64), nullable=False),
    )
    op.create_index("ix_review_items_open", "review_items", ["status", "priority", "seq"])
    op.create_table(
        "review_admissions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("admitted_at", sa.Float(), nullable=False),
    )
    op.create_index(
        "ix_review_admissions_admitted_at", "review_admissions", ["admitted_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_review_admissions_admitted_at", table_name="review_admissions")
    op.drop_table("review_admissions")
    op.drop_index("ix_review_items_open", table_name="review_items")
    op.drop_table("review_items")
