"""Rollouts as persisted state: rollout, rollout_device, rollout_event, device_lease.

The 0.1.0 log (`deployment`: one row per device outcome, written when the device finished)
moves into the new tables: one `rollout` row per rollout id, one `rollout_device` row per
device with its outcome as a step (active -> committed), one `rollout_event` per old row.
Downgrade moves them back (steps without an 0.1.0 name become `failed`, their reason kept).
Byte counts become BIGINT (a 2.3 GB model overflowed 0.1.0's INTEGER on PostgreSQL).

Revision ID: 0002_rollouts
Revises: 0001_baseline
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_rollouts"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
OLD_TO_STEP = {"active": "committed"}
STEP_TO_OLD = {"committed": "active", "rolled-back": "rolled-back", "failed": "failed",
               "halted": "halted", "skipped": "skipped", "unchanged": "unchanged",
               "staged": "staged"}


def _deployment(meta: sa.MetaData) -> sa.Table:
    return sa.Table(
        "deployment", meta,
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("rollout", sa.String(), nullable=False, index=True),
        sa.Column("device", sa.String(), nullable=False, index=True),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("variant", sa.String(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("bytes_sent", sa.Integer(), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
    )


def upgrade() -> None:
    rollout = op.create_table(
        "rollout",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("policy_json", sa.String(), nullable=False),
        sa.Column("waves_json", sa.String(), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("approved_wave", sa.Integer(), nullable=False),
        sa.Column("next_wave_at", _TS, nullable=True),
        sa.Column("controller", sa.String(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("heartbeat_at", _TS, nullable=True),
        sa.Column("abort_requested", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
    )
    op.create_index("ix_rollout_status", "rollout", ["status"])
    device = op.create_table(
        "rollout_device",
        sa.Column("rollout", sa.String(), sa.ForeignKey("rollout.id"), primary_key=True),
        sa.Column("device", sa.String(), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(), nullable=False),
        sa.Column("variant", sa.String(), nullable=False),
        sa.Column("format", sa.String(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("n_ctx", sa.Integer(), nullable=False),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=False),
        sa.Column("choice", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("hint", sa.String(), nullable=False),
        sa.Column("bytes_sent", sa.BigInteger(), nullable=False),
        sa.Column("progress_bytes", sa.BigInteger(), nullable=False),
        sa.Column("model_failed", sa.Boolean(), nullable=False),
        sa.Column("upload_attempts", sa.Integer(), nullable=False),
        sa.Column("predicted_json", sa.String(), nullable=False),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
    )
    op.create_index("ix_rollout_device_device", "rollout_device", ["device"])
    op.create_index("ix_rollout_device_step", "rollout_device", ["step"])
    event = op.create_table(
        "rollout_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("rollout", sa.String(), nullable=False),
        sa.Column("device", sa.String(), nullable=False),
        sa.Column("step", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("bytes_sent", sa.BigInteger(), nullable=False),
        sa.Column("at", _TS, nullable=False),
    )
    op.create_index("ix_rollout_event_rollout", "rollout_event", ["rollout"])
    op.create_table(
        "device_lease",
        sa.Column("device", sa.String(), primary_key=True),
        sa.Column("rollout", sa.String(), nullable=False),
        sa.Column("acquired_at", _TS, nullable=False),
    )
    op.create_index("ix_device_lease_rollout", "device_lease", ["rollout"])
    _move_log(rollout, device, event)
    op.drop_table("deployment")
    # 0.1.0 kept byte counts in 32-bit INTEGER: a 2.3 GB model overflowed it on PostgreSQL
    for table, column in (("model_artifact", "size_bytes"), ("measurement", "peak_rss_bytes")):
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, type_=sa.BigInteger(), existing_type=sa.Integer(),
                               existing_nullable=False)


def _move_log(rollout: sa.Table, device: sa.Table, event: sa.Table) -> None:
    bind = op.get_bind()
    old = _deployment(sa.MetaData())
    rows = bind.execute(sa.select(old).order_by(old.c.id)).mappings().all()
    rollouts: dict[str, dict[str, object]] = {}
    devices: dict[tuple[str, str], dict[str, object]] = {}
    for r in rows:
        at = r["finished_at"] or r["started_at"]
        head = rollouts.setdefault(r["rollout"], {
            "id": r["rollout"], "model": r["model"], "status": "completed",
            "policy_json": "{}", "waves_json": "[]", "wave": 0, "approved_wave": 0,
            "controller": "", "epoch": 0, "abort_requested": False,
            "reason": "recorded by edgefleet 0.1.0", "created_at": r["started_at"],
            "updated_at": at, "finished_at": at})
        head["finished_at"] = head["updated_at"] = max(head["updated_at"], at)
        step = OLD_TO_STEP.get(r["status"], r["status"])
        devices[(r["rollout"], r["device"])] = {  # a later row of a device supersedes
            "rollout": r["rollout"], "device": r["device"],
            "position": len(devices), "wave": 0, "step": step, "variant": r["variant"],
            "format": "", "sha256": r["sha256"], "size_bytes": 0, "path": "", "n_ctx": 0,
            "memory_bytes": 0, "choice": "", "reason": r["reason"], "hint": "",
            "bytes_sent": r["bytes_sent"], "progress_bytes": 0, "model_failed": False,
            "upload_attempts": 0,
            "predicted_json": "{}", "started_at": r["started_at"], "updated_at": at,
            "finished_at": r["finished_at"]}
    if rollouts:
        op.bulk_insert(rollout, list(rollouts.values()))
        op.bulk_insert(device, list(devices.values()))
        op.bulk_insert(event, [{"rollout": r["rollout"], "device": r["device"],
                                "step": OLD_TO_STEP.get(r["status"], r["status"]),
                                "reason": r["reason"], "bytes_sent": r["bytes_sent"],
                                "at": r["finished_at"] or r["started_at"]} for r in rows])


def downgrade() -> None:
    for table, column in (("model_artifact", "size_bytes"), ("measurement", "peak_rss_bytes")):
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, type_=sa.Integer(), existing_type=sa.BigInteger(),
                               existing_nullable=False)
    bind = op.get_bind()
    meta = sa.MetaData()
    new = sa.Table("rollout_device", meta, autoload_with=bind)
    heads = sa.Table("rollout", meta, autoload_with=bind)
    joined = sa.select(new, heads.c.model).join(heads, heads.c.id == new.c.rollout)
    rows = bind.execute(joined.order_by(new.c.rollout, new.c.position)).mappings().all()
    old = _deployment(sa.MetaData())
    old.create(bind)
    if rows:
        op.bulk_insert(old, [{
            "rollout": r["rollout"], "device": r["device"], "model": r["model"],
            "variant": r["variant"], "sha256": r["sha256"],
            "status": STEP_TO_OLD.get(r["step"], "failed"),
            "reason": r["reason"] if r["step"] in STEP_TO_OLD else f"{r['step']}: {r['reason']}",
            "bytes_sent": r["bytes_sent"], "started_at": r["started_at"] or r["updated_at"],
            "finished_at": r["finished_at"]} for r in rows])
    for table in ("device_lease", "rollout_event", "rollout_device", "rollout"):
        op.drop_table(table)
