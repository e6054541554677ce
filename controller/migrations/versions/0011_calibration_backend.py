"""The backend a device's calibration was measured on (``device.decode_efficiency_backend``:
``cpu``, ``cuda``, ``metal``, ...): a share of bandwidth measured on the CPU says nothing about
the GPU path, so the cost model applies a calibration only while the device is predicted on
the backend it was measured on. Calibrations from before it were all on the CPU (agents ran
llama.cpp with no GPU offload then) and are marked so.

Revision ID: 0011_calibration_backend
Revises: 0010_rollout_device_held
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_calibration_backend"
down_revision = "0010_rollout_device_held"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("device", sa.Column("decode_efficiency_backend", sa.String(), nullable=False,
                                      server_default=""))
    device = sa.table("device", sa.column("decode_efficiency", sa.Float()),
                      sa.column("decode_efficiency_backend", sa.String()))
    op.execute(device.update().where(device.c.decode_efficiency > 0)
               .values(decode_efficiency_backend="cpu"))


def downgrade() -> None:
    op.drop_column("device", "decode_efficiency_backend")
