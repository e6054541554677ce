"""Revision 0006_fanout on SQLite and a real PostgreSQL: where each device got its bytes
(site, bytes from peers, per peer) is added to rollout_device beside the rows already there,
and its downgrade drops those columns and nothing else."""

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

NEW = ("site", "bytes_from_peers", "peer_bytes_json")


def _columns(engine: sa.Engine) -> set[str]:
    with engine.connect() as c:
        return {col["name"] for col in sa.inspect(c).get_columns("rollout_device")}


def test_0005_keeps_the_rollout_log_both_ways(db_url: str, home: Path) -> None:
    log = SqlRolloutLog(SqlInventory(db_url))
    art = Artifact("m", "q8_0", "gguf", "a" * 64, 40 * 2**20, "/m.gguf")
    job = DeviceJob("kiosk-2", 0, 0, Step.STAGED, art, site="shop",
                    bytes_from_peers=40 * 2**20, peer_bytes={"kiosk-1": 40 * 2**20})
    log.create(Rollout("r1", "m", "completed", {}, [1]), [job])
    assert log.load("r1")[1][0].peer_bytes == {"kiosk-1": 40 * 2**20}  # 64-bit, both ways
    engine = engine_for(db_url, migrate=False)
    schema.downgrade(engine, db_url, "0005_trust")
    assert not set(NEW) & _columns(engine)
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT step FROM rollout_device")).scalar() == "staged"
    schema.upgrade(engine, db_url, "0006_fanout")
    assert set(NEW) <= _columns(engine)
    schema.upgrade(engine, db_url, HEAD)  # the rows below are read by this code's tables
    [back] = log.load("r1")[1]  # rows from before the revision: no site, nothing from peers
    assert (back.step, back.site, back.bytes_from_peers, back.peer_bytes) == (
        Step.STAGED, "", 0, {})
    schema.upgrade(engine, db_url)  # later revisions on top: the models match the tables
    assert schema.status(engine).up_to_date and schema.drift(engine) == []
