"""Group membership: a device in any number of groups, groups nested in groups.

Upgrade: creates ``group_membership`` (device, group) and ``group_parent`` (group, parent),
moves every device's ``device.group_name`` into ``group_membership`` and drops that column.
No device loses its group: each old row becomes one membership.

Downgrade: folds the memberships back into one ``device.group_name`` per device, chosen
deterministically: the alphabetically first group the device is directly in, ``ungrouped``
preferred last (a device whose only group is ``ungrouped`` keeps it; one with none gets it).
The other memberships and every parent/child link are lost: 0001 cannot hold them. The
devices that lose memberships are logged (alembic's logger) with the group each keeps.

Revision ID: 0003_group_membership
Revises: 0002_rollouts
Create Date: 2026-12-01
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0003_group_membership"
down_revision = "0002_rollouts"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

_meta = sa.MetaData()
# Frozen copies of the tables this revision touches, as it leaves them.
DEVICE_GROUP = sa.Table(
    "device_group", _meta,
    sa.Column("name", sa.String(), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
DEVICE = sa.Table(
    "device", _meta,
    sa.Column("name", sa.String(), primary_key=True),
    sa.Column("group_name", sa.String()),  # only between the steps below
)
GROUP_MEMBERSHIP = sa.Table(
    "group_membership", _meta,
    sa.Column("device_name", sa.String(), sa.ForeignKey("device.name"), primary_key=True,
              nullable=False),
    sa.Column("group_name", sa.String(), sa.ForeignKey("device_group.name"), primary_key=True,
              nullable=False, index=True),
)
GROUP_PARENT = sa.Table(
    "group_parent", _meta,
    sa.Column("group_name", sa.String(), sa.ForeignKey("device_group.name"), primary_key=True,
              nullable=False),
    sa.Column("parent_name", sa.String(), sa.ForeignKey("device_group.name"), primary_key=True,
              nullable=False, index=True),
)
UNGROUPED = "ungrouped"


def upgrade() -> None:
    bind = op.get_bind()
    rows = [(r.name, r.group_name) for r in
            bind.execute(sa.select(DEVICE.c.name, DEVICE.c.group_name))]
    # the column goes first: SQLite copies the table to drop a column, and a copy of a table
    # that memberships already reference would break their foreign keys
    op.drop_index("ix_device_group_name", table_name="device")
    with op.batch_alter_table("device") as batch:
        batch.drop_column("group_name")
    GROUP_PARENT.create(bind)
    GROUP_MEMBERSHIP.create(bind)
    if rows:
        known = {r.name for r in bind.execute(sa.select(DEVICE_GROUP.c.name))}
        missing = sorted({g for _, g in rows} - known)
        if missing:  # 0.1.0 enforced the foreign key only where SQLite was told to
            now = datetime.now(timezone.utc)
            bind.execute(DEVICE_GROUP.insert(), [{"name": g, "created_at": now}
                                                 for g in missing])
        bind.execute(GROUP_MEMBERSHIP.insert(), [{"device_name": name, "group_name": group}
                                                 for name, group in rows])


def choose_group(groups: list[str]) -> str:
    """The one group a device keeps on downgrade: the alphabetically first of its direct
    groups other than ``ungrouped``; ``ungrouped`` when it has no other."""
    named = sorted(g for g in groups if g != UNGROUPED)
    return named[0] if named else UNGROUPED


def downgrade() -> None:
    bind = op.get_bind()
    memberships: dict[str, list[str]] = {
        r.name: [] for r in bind.execute(sa.select(DEVICE.c.name))}
    for r in bind.execute(sa.select(GROUP_MEMBERSHIP.c.device_name,
                                    GROUP_MEMBERSHIP.c.group_name)):
        memberships.setdefault(r.device_name, []).append(r.group_name)
    kept = {name: choose_group(groups) for name, groups in memberships.items()}
    for name, groups in sorted(memberships.items()):
        if len(groups) > 1:
            log.warning("downgrade: device %s keeps group %s of %s", name, kept[name],
                        ", ".join(sorted(groups)))
    known = {r.name for r in bind.execute(sa.select(DEVICE_GROUP.c.name))}
    GROUP_MEMBERSHIP.drop(bind)
    GROUP_PARENT.drop(bind)
    if UNGROUPED in kept.values() and UNGROUPED not in known:
        bind.execute(DEVICE_GROUP.insert().values(name=UNGROUPED,
                                                  created_at=datetime.now(timezone.utc)))
    with op.batch_alter_table("device") as batch:
        batch.add_column(sa.Column("group_name", sa.String(), nullable=True))
    for name, group in kept.items():
        bind.execute(DEVICE.update().where(DEVICE.c.name == name).values(group_name=group))
    with op.batch_alter_table("device") as batch:
        batch.alter_column("group_name", existing_type=sa.String(), nullable=False)
        batch.create_foreign_key("device_group_name_fkey", "device_group", ["group_name"],
                                 ["name"])
    op.create_index("ix_device_group_name", "device", ["group_name"])
