"""Whether a device's store held the artifact when its rollout was planned
(``rollout_device.held``): such a device is a source for its site from the start, and a
rollout resumed after the controller stopped (`fleet rollouts resume`) knows it too, instead
of only the devices that had reached a step holding the blob.

Revision ID: 0010_rollout_device_held
Revises: 0009_device_model_adapter
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_rollout_device_held"
down_revision = "0009_device_model_adapter"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN, as 0008: no batch copy of the table
    op.add_column("rollout_device", sa.Column("held", sa.Boolean(), nullable=False,
                                              server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("rollout_device", "held")
