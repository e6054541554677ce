"""Telemetry history: the collector's cursors and live state per device, request records and
device samples as the agents kept them, per-minute and per-hour rollups, gaps, monitor
settings (grid carbon intensity, SLO limits), the plan's predictions and the collector's
heartbeat.

Revision ID: 0004_telemetry
Revises: 0003_group_membership
Create Date: 2026-12-01
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004_telemetry"
down_revision = "0003_group_membership"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_BIG = sa.BigInteger()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _s(name: str, **kw: Any) -> sa.Column[Any]:
    return sa.Column(name, sa.String(), nullable=False, **kw)


def _i(name: str, **kw: Any) -> sa.Column[Any]:
    return sa.Column(name, sa.Integer(), nullable=False, **kw)


def _b(name: str, **kw: Any) -> sa.Column[Any]:
    return sa.Column(name, _BIG, nullable=False, **kw)


def _f(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.Float(), nullable=nullable)


def _bool(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Boolean(), nullable=False)


# Frozen copy of controller/adapters/tables.py as of this revision.
_meta = sa.MetaData()
TABLES = (
    sa.Table("telemetry_model", _meta,
             sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
             _s("sha256", unique=True), _s("model"), _s("variant")),
    sa.Table("device_live", _meta,
             _s("device", primary_key=True), _s("epoch"), _i("epoch_no"), _b("last_seq"),
             _s("sample_epoch"), _i("sample_epoch_no"), _b("last_sample_seq"),
             _f("last_sample_ts", True),
             _bool("reachable"), _f("last_ok_ts", True), _f("last_attempt_ts", True),
             _f("unreachable_since_ts", True), _s("last_error"), _s("state"),
             _s("active_sha256"), _s("active_model"), _s("active_variant"), _bool("on_trial"),
             _s("previous_model"), _s("previous_variant"), _i("worker_crashes"),
             _b("requests_total"), _f("power_w", True), _s("energy_meter"),
             _f("cpu_percent", True), _b("ram_used_bytes"), _b("ram_total_bytes"),
             _f("max_temp_c", True), _f("last_joules_per_token", True), _bool("throttled"),
             _s("throttle_reasons"), _f("sample_every_s"), _f("pass_seconds")),
    sa.Table("telemetry_request", _meta,
             _s("device", primary_key=True), _i("epoch_no", primary_key=True),
             _b("seq", primary_key=True), sa.Column("ts", sa.Float(), nullable=False,
                                                    index=True),
             _i("model_id"), _f("ttft_ms"), _f("total_ms"), _i("prompt_tokens"),
             _i("completion_tokens"), _f("decode_tps"), _f("prefill_tps"), _s("outcome"),
             _f("energy_j"), _s("meter"), _b("peak_rss_bytes")),
    sa.Table("telemetry_sample", _meta,
             _s("device", primary_key=True), _i("epoch_no", primary_key=True),
             _b("seq", primary_key=True), sa.Column("ts", sa.Float(), nullable=False,
                                                    index=True),
             _f("interval_s"), _f("cpu_percent"), _b("ram_used_bytes"), _f("power_w"),
             _f("energy_j"), _s("meter"), _f("max_temp_c", True), _s("temps_json"),
             _bool("throttled"), _s("throttle_reasons"), _f("cpu_freq_mhz"),
             _i("worker_crashes"), _i("model_id")),
    sa.Table("telemetry_request_rollup", _meta,
             _i("period_s", primary_key=True), _s("device", primary_key=True),
             _i("model_id", primary_key=True), _s("meter", primary_key=True),
             _b("bucket", primary_key=True), _i("requests"), _i("errors"), _i("cancelled"),
             _b("prompt_tokens"), _b("completion_tokens"), _f("energy_j"), _f("ttft_sum_ms"),
             _f("latency_sum_ms"), _s("ttft_sketch"), _s("tps_sketch"),
             sa.Index("ix_telemetry_request_rollup_time", "period_s", "bucket")),
    sa.Table("telemetry_sample_rollup", _meta,
             _i("period_s", primary_key=True), _s("device", primary_key=True),
             _i("model_id", primary_key=True), _s("meter", primary_key=True),
             _b("bucket", primary_key=True), _i("samples"),
             _f("seconds"), _f("energy_j"), _f("cpu_sum"), _f("max_temp_c", True),
             _i("throttled_samples"), _i("worker_crashes"),
             sa.Index("ix_telemetry_sample_rollup_time", "period_s", "bucket")),
    sa.Table("telemetry_gap", _meta,
             sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
             _s("device", index=True), _s("kind"), _f("start_ts"), _f("end_ts", True),
             _i("lost"), _s("detail")),
    sa.Table("monitor_setting", _meta,
             _s("scope", primary_key=True), _s("key", primary_key=True), _f("value"),
             sa.Column("updated_at", _TS, nullable=False)),
    sa.Table("plan_prediction", _meta,
             sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
             _s("rollout", index=True), _s("device", index=True), _s("model"), _s("variant"),
             _s("sha256"), _s("profile"), _f("tokens_per_s"), _f("ttft_ms"),
             _f("joules_per_token"), _i("prompt_tokens"), _i("ctx"), _s("source"),
             sa.Column("created_at", _TS, nullable=False)),
    sa.Table("collector_beat", _meta,
             _s("name", primary_key=True), _f("started_ts"), _f("beat_ts"), _f("interval_s"),
             _i("devices"), _f("last_pass_s")),
)


def upgrade() -> None:
    bind = op.get_bind()
    for table in TABLES:
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(TABLES):
        table.drop(bind)
