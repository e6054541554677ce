"""Revision 0010_rollout_device_held on SQLite and a real PostgreSQL: whether a device held the
artifact when its rollout was planned is kept with the rollout (so a resumed rollout's sites
start from those devices), rows from before it read as not held, and its downgrade drops the
column and nothing else."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from controller.adapters import schema
from controller.adapters.db import engine_for
from controller.adapters.inventory import SqlInventory
from controller.adapters.rollout_repo import SqlRolloutLog
from controller.core.steps import Step
from controller.migrations import HEAD
from controller.services.ports import Artifact, DeviceJob, Rollout


def _columns(engine: sa.Engine) -> set[str]:
    with engine.connect() as c:
        return {col["name"] for col in sa.inspect(c).get_columns("rollout_device")}


def test_held_survives_a_reload_and_both_ways_of_the_revision(db_url: str, home: Path) -> None:
    log = SqlRolloutLog(SqlInventory(db_url))
    art = Artifact("m", "q4_k_m", "gguf", "b" * 64, 2**20, "/m.gguf")
    jobs = [DeviceJob("kiosk-1", 0, 0, Step.PLANNED, art, site="shop"),
            DeviceJob("kiosk-2", 1, 0, Step.PLANNED, art, site="shop", held=True)]
    log.create(Rollout("r1", "m", "running", {}, [2]), jobs)
    assert [j.held for j in log.load("r1")[1]] == [False, True]
    engine = engine_for(db_url, migrate=False)
    schema.downgrade(engine, db_url, "0009_device_model_adapter")
    assert "held" not in _columns(engine) and {"site", "base_sha256"} <= _columns(engine)
    schema.upgrade(engine, db_url, HEAD)
    # rows from before the revision: nobody is known to have held anything
    assert [(j.device, j.step, j.site, j.held) for j in log.load("r1")[1]] == [
        ("kiosk-1", Step.PLANNED, "shop", False), ("kiosk-2", Step.PLANNED, "shop", False)]
    assert schema.status(engine).up_to_date and schema.drift(engine) == []
