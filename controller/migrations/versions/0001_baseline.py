"""Baseline: the schema of edgefleet 0.1.0, and adoption of databases it created.

edgefleet 0.1.0 created its tables with ``create_all`` and grew them with an
``ALTER TABLE ... ADD COLUMN`` loop that added every new column as nullable and without a
default, so rows older than a column hold NULL where the code expects a value. On such a
database (tables present, no ``alembic_version``) this revision adds what is missing, fills
those NULLs with the column's default and makes the column NOT NULL, then stamps it. On an
empty database it creates the tables.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

_meta = sa.MetaData()


def _now() -> datetime:
    return datetime.now(timezone.utc)


# Aware UTC timestamps: TIMESTAMP WITH TIME ZONE on PostgreSQL (SQLModel >= 0.0.25 made them
# so; databases made with an older SQLModel have TIMESTAMP WITHOUT and are converted).
_TS = sa.DateTime(timezone=True)


# Frozen copy of controller/adapters/tables.py as of 0.1.0: later changes are later revisions.
# ``info["fill"]`` is the value a legacy NULL (or a newly added column) receives.
def _col(name: str, type_: Any, fill: Any = None, *args: Any, **kw: Any) -> sa.Column[Any]:
    return sa.Column(name, type_, *args, info={"fill": fill}, **kw)


DEVICE_GROUP = sa.Table(
    "device_group", _meta,
    _col("name", sa.String(), primary_key=True, nullable=False),
    _col("created_at", _TS, _now, nullable=False),
)
DEVICE = sa.Table(
    "device", _meta,
    _col("name", sa.String(), primary_key=True, nullable=False),
    _col("host", sa.String(), "", nullable=False),
    _col("ssh_port", sa.Integer(), 22, nullable=False),
    _col("user", sa.String(), "", nullable=False),
    _col("key_path", sa.String(), "", nullable=False),
    _col("agent_port", sa.Integer(), 50051, nullable=False),
    _col("group_name", sa.String(), None, sa.ForeignKey("device_group.name"), nullable=False,
         index=True),
    _col("profile", sa.String(), "", nullable=False),
    _col("data_dir", sa.String(), "", nullable=False),
    _col("probed_json", sa.String(), "", nullable=False),
    _col("state", sa.String(), "registered", nullable=False),
    _col("model", sa.String(), "", nullable=False),
    _col("variant", sa.String(), "", nullable=False),
    _col("sha256", sa.String(), "", nullable=False),
    _col("last_ttft_ms", sa.Float(), nullable=True),
    _col("last_latency_ms", sa.Float(), nullable=True),
    _col("last_tokens_per_s", sa.Float(), nullable=True),
    _col("last_seen", _TS, nullable=True),
    _col("lab", sa.Boolean(), False, nullable=False),
    _col("labels_json", sa.String(), "{}", nullable=False),
    _col("proxy_jump", sa.String(), "", nullable=False),
    _col("tls", sa.Boolean(), False, nullable=False),
    _col("decode_efficiency", sa.Float(), nullable=True),
    _col("created_at", _TS, _now, nullable=False),
)
MODEL_ARTIFACT = sa.Table(
    "model_artifact", _meta,
    _col("id", sa.Integer(), primary_key=True, nullable=False),
    _col("model", sa.String(), "", nullable=False, index=True),
    _col("variant", sa.String(), "", nullable=False),
    _col("sha256", sa.String(), "", nullable=False),
    _col("size_bytes", sa.Integer(), 0, nullable=False),
    _col("path", sa.String(), "", nullable=False),
    _col("created_at", _TS, _now, nullable=False),
)
DEPLOYMENT = sa.Table(
    "deployment", _meta,
    _col("id", sa.Integer(), primary_key=True, nullable=False),
    _col("rollout", sa.String(), "", nullable=False, index=True),
    _col("device", sa.String(), "", nullable=False, index=True),
    _col("model", sa.String(), "", nullable=False),
    _col("variant", sa.String(), "", nullable=False),
    _col("sha256", sa.String(), "", nullable=False),
    _col("status", sa.String(), "", nullable=False),
    _col("reason", sa.String(), "", nullable=False),
    _col("bytes_sent", sa.Integer(), 0, nullable=False),
    _col("started_at", _TS, _now, nullable=False),
    _col("finished_at", _TS, nullable=True),
)
MEASUREMENT = sa.Table(
    "measurement", _meta,
    _col("id", sa.Integer(), primary_key=True, nullable=False),
    _col("device", sa.String(), "", nullable=False, index=True),
    _col("model", sa.String(), "", nullable=False),
    _col("variant", sa.String(), "", nullable=False),
    _col("sha256", sa.String(), "", nullable=False),
    _col("source", sa.String(), "", nullable=False),
    _col("samples", sa.Integer(), 0, nullable=False),
    _col("decode_tokens_per_s", sa.Float(), 0.0, nullable=False),
    _col("prefill_tokens_per_s", sa.Float(), 0.0, nullable=False),
    _col("ttft_ms", sa.Float(), 0.0, nullable=False),
    _col("predicted_tokens_per_s", sa.Float(), 0.0, nullable=False),
    _col("decode_efficiency", sa.Float(), 0.0, nullable=False),
    _col("peak_rss_bytes", sa.Integer(), 0, nullable=False),
    _col("measured_at", _TS, _now, nullable=False),
)
TABLES = (DEVICE_GROUP, DEVICE, MODEL_ARTIFACT, DEPLOYMENT, MEASUREMENT)


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    for table in TABLES:
        if inspector.has_table(table.name):
            _adopt(bind, inspector, table)
        else:
            table.create(bind)


def _adopt(bind: sa.engine.Connection, inspector: sa.Inspector, table: sa.Table) -> None:
    """Bring a table created by 0.1.0's create_all + ADD COLUMN loop to the baseline."""
    existing = {c["name"]: c for c in inspector.get_columns(table.name)}
    for column in table.columns:
        if column.name not in existing:
            op.add_column(table.name, sa.Column(column.name, column.type, nullable=True))
    if bind.dialect.name == "postgresql":
        for column in table.columns:
            reflected = existing.get(column.name)
            if (reflected is not None and isinstance(column.type, sa.DateTime)
                    and not getattr(reflected["type"], "timezone", True)):
                op.alter_column(table.name, column.name, type_=column.type,
                                postgresql_using=f'"{column.name}" AT TIME ZONE \'UTC\'')
    loose = [c for c in table.columns
             if not c.nullable and (c.name not in existing or existing[c.name]["nullable"])]
    for column in loose:
        fill = column.info.get("fill")
        if fill is None:
            raise RuntimeError(f"{table.name}.{column.name} holds NULLs and has no default")
        value = fill() if callable(fill) else fill
        bind.execute(table.update().where(column.is_(None)).values({column.name: value}))
    if loose:
        with op.batch_alter_table(table.name) as batch:
            for column in loose:
                batch.alter_column(column.name, existing_type=column.type, nullable=False)
    indexes = {i["name"] for i in sa.inspect(bind).get_indexes(table.name)}
    for index in table.indexes:
        if index.name not in indexes:
            index.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(TABLES):
        table.drop(bind, checkfirst=True)
