"""Several models per device: every active model of each device (``device_model``: name,
variant, sha256, aliases, pinned, resident, memory, last use), and the model name, LoRA
adapter and on-demand load wait of each request record (``telemetry_request``).

Revision ID: 0007_device_models
Revises: 0006_fanout
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_device_models"
down_revision = "0006_fanout"
branch_labels = None
depends_on = None

REQUEST_COLUMNS = (
    ("model", sa.String(), "''"),
    ("adapter", sa.String(), "''"),
    ("load_wait_ms", sa.Float(), "0"),
)


def upgrade() -> None:
    op.create_table(
        "device_model",
        sa.Column("device", sa.String(), primary_key=True),
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("variant", sa.String(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("aliases_json", sa.String(), nullable=False),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("resident", sa.Boolean(), nullable=False),
        sa.Column("on_trial", sa.Boolean(), nullable=False),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("telemetry_request") as batch:
        for name, type_, default in REQUEST_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=False,
                                       server_default=sa.text(default)))


def downgrade() -> None:
    with op.batch_alter_table("telemetry_request") as batch:
        for name, _, _ in reversed(REQUEST_COLUMNS):
            batch.drop_column(name)
    op.drop_table("device_model")
