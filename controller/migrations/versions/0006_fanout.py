"""Where each device of a rollout got its bytes: the site it shares blobs with, the verified
bytes it received from peers, and how many from each (``bytes_sent`` stays what the
controller sent it).

Revision ID: 0006_fanout
Revises: 0005_trust
Create Date: 2026-12-15
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_fanout"
down_revision = "0005_trust"
branch_labels = None
depends_on = None

COLUMNS = (
    ("site", sa.String(), ""),
    ("bytes_from_peers", sa.BigInteger(), "0"),
    ("peer_bytes_json", sa.String(), "{}"),
)


def upgrade() -> None:
    with op.batch_alter_table("rollout_device") as batch:
        for name, type_, default in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=False,
                                       server_default=sa.text(f"'{default}'")))


def downgrade() -> None:
    with op.batch_alter_table("rollout_device") as batch:
        for name, _, _ in reversed(COLUMNS):
            batch.drop_column(name)
