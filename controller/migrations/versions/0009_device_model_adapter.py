"""The LoRA adapter each model of a device serves by default (``device_model.adapter``), so
that `fleet status` and the dashboard name it on its own model wherever the device runs
several, not only on the device row.

Revision ID: 0009_device_model_adapter
Revises: 0008_adapter_rollouts
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_device_model_adapter"
down_revision = "0008_adapter_rollouts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN, as 0008: no batch copy of the table
    op.add_column("device_model", sa.Column("adapter", sa.String(), nullable=False,
                                            server_default=sa.text("''")))


def downgrade() -> None:
    op.drop_column("device_model", "adapter")
