"""Revision 0004_telemetry on SQLite and a real PostgreSQL: it adds the telemetry tables
beside the existing data, and its downgrade removes them and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from controller.adapters import schema
from controller.adapters.db import engine_for

TELEMETRY_TABLES = {"telemetry_model", "device_live", "telemetry_request", "telemetry_sample",
                    "telemetry_request_rollup", "telemetry_sample_rollup", "telemetry_gap",
                    "monitor_setting", "plan_prediction", "collector_beat"}


def test_0002_upgrades_beside_existing_data_and_downgrades_cleanly(db_url: str,
                                                                   home: Path) -> None:
    engine = engine_for(db_url)
    schema.downgrade(engine, db_url, "0001_baseline")
    with engine.begin() as c:
        assert not TELEMETRY_TABLES & set(sa.inspect(c).get_table_names())
        c.execute(sa.text("INSERT INTO device_group (name, created_at) VALUES ('g', :t)"),
                  {"t": "2026-01-01 00:00:00+00:00"})
    schema.upgrade(engine, db_url, "0004_telemetry")
    with engine.begin() as c:
        assert set(sa.inspect(c).get_table_names()) >= TELEMETRY_TABLES
        c.execute(sa.text(
            "INSERT INTO telemetry_request (device, epoch_no, seq, ts, model_id, ttft_ms, "
            "total_ms, prompt_tokens, completion_tokens, decode_tps, prefill_tps, outcome, "
            "energy_j, meter, peak_rss_bytes) VALUES ('d', 1, 5000000000, 1.5, 1, 2, 3, 4, 5, "
            "6, 7, 'ok', 0.5, 'rapl', 9000000000)"))
        # the agent's sequence is 64-bit, and (device, epoch_no, seq) can be stored once only
        with pytest.raises(sa.exc.IntegrityError), c.begin_nested():
            c.execute(sa.text(
                "INSERT INTO telemetry_request (device, epoch_no, seq, ts, model_id, ttft_ms, "
                "total_ms, prompt_tokens, completion_tokens, decode_tps, prefill_tps, outcome, "
                "energy_j, meter, peak_rss_bytes) VALUES ('d', 1, 5000000000, 2, 1, 2, 3, 4, "
                "5, 6, 7, 'ok', 0.5, 'rapl', 1)"))
    schema.upgrade(engine, db_url)  # later revisions on top: the models match the tables
    assert schema.drift(engine) == []
    schema.downgrade(engine, db_url, "0001_baseline")
    with engine.connect() as c:
        assert not TELEMETRY_TABLES & set(sa.inspect(c).get_table_names())
        assert c.execute(sa.text("SELECT name FROM device_group")).scalar() == "g"
    schema.upgrade(engine, db_url)
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM telemetry_request")).scalar() == 0
    assert schema.status(engine).up_to_date and schema.drift(engine) == []
