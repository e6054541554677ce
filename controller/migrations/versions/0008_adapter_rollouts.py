"""LoRA adapters through the rollout machine (``fleet deploy MODEL --adapter NAME``): each
device's part names the base its adapter applies on (``rollout_device.base_sha256``, the
device's active variant when planned), and a device records the adapter it serves by default
(``device.adapter``, ``device.adapter_sha256``) for `fleet status`.

Revision ID: 0008_adapter_rollouts
Revises: 0007_device_models
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_adapter_rollouts"
down_revision = "0007_device_models"
branch_labels = None
depends_on = None

COLUMNS = {
    "rollout_device": ("base_sha256",),
    "device": ("adapter", "adapter_sha256"),
}


def upgrade() -> None:
    # plain ADD/DROP COLUMN (SQLite 3.35+ has both): a batch copy of ``device`` would drop
    # the table the group memberships refer to
    for table, names in COLUMNS.items():
        for name in names:
            op.add_column(table, sa.Column(name, sa.String(), nullable=False,
                                           server_default=sa.text("''")))


def downgrade() -> None:
    for table, names in COLUMNS.items():
        for name in reversed(names):
            op.drop_column(table, name)
