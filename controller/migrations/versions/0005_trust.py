"""Trust records: each device's manifest counter (the version every signed load order carries),
the certificates the fleet CA issued (with their revocations), and which revocation list each
device was last given.

``manifest_counter`` is keyed by device name, not tied to the ``device`` row: a device removed
and added again (or a lab started again, keeping the devices' stores) keeps counting from
where its agent's high-water mark is.

Revision ID: 0005_trust
Revises: 0004_telemetry
Create Date: 2027-01-10
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005_trust"
down_revision = "0004_telemetry"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def _s(name: str, **kw: Any) -> sa.Column[Any]:
    return sa.Column(name, sa.String(), nullable=False, **kw)


# Frozen copy of controller/adapters/tables.py as of this revision.
_meta = sa.MetaData()
TABLES = (
    sa.Table("manifest_counter", _meta,
             _s("device", primary_key=True),
             sa.Column("seq", sa.BigInteger(), nullable=False),
             sa.Column("updated_at", _TS, nullable=False)),
    sa.Table("issued_cert", _meta,
             _s("serial", primary_key=True), _s("subject", index=True), _s("role"),
             sa.Column("not_after", _TS, nullable=False),
             sa.Column("issued_at", _TS, nullable=False),
             sa.Column("current", sa.Boolean(), nullable=False),
             sa.Column("revoked_at", _TS, nullable=True), _s("revoke_reason")),
    sa.Table("trust_delivery", _meta,
             _s("device", primary_key=True),
             sa.Column("crl_number", sa.BigInteger(), nullable=False),
             sa.Column("delivered_at", _TS, nullable=False)),
)


def upgrade() -> None:
    bind = op.get_bind()
    for table in TABLES:
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(TABLES):
        table.drop(bind)
