"""Feedback rows, idempotency keys and the CSV export's watermark.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback_rows",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("feedback_id", sa.String(64), nullable=False),
        sa.Column("embedding", sa.JSON(), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("prediction", sa.String(200), nullable=False),
        sa.Column("timestamp", sa.String(40), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(200), nullable=False),
        sa.Column("image", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_feedback_rows_feedback_id", "feedback_rows", ["feedback_id"])
    op.create_table(
        "idempotency_keys",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("feedback_id", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rows_written", sa.Integer(), nullable=False),
        sa.Column("prod_rows_total", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(200), nullable=False),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])
    op.create_table(
        "feedback_exports",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("feedback_exports")
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index("ix_feedback_rows_feedback_id", table_name="feedback_rows")
    op.drop_table("feedback_rows")
