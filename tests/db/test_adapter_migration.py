"""Revision 0008_adapter_rollouts on SQLite and a real PostgreSQL: each rollout device's base
for an adapter (rollout_device.base_sha256) and the adapter a device serves (device.adapter,
adapter_sha256) are added beside the rows already there; the downgrade drops those columns
and nothing else."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from controller.adapters import schema
from controller.adapters.db import engine_for
from controller.adapters.inventory import SqlInventory
from controller.adapters.rollout_repo import SqlRolloutLog
from controller.adapters.tables import Device
from controller.core.steps import Step
from controller.migrations import HEAD
from controller.services.ports import Artifact, DeviceJob, Rollout

NEW = {"rollout_device": {"base_sha256"}, "device": {"adapter", "adapter_sha256"}}


def _columns(engine: sa.Engine, table: str) -> set[str]:
    with engine.connect() as c:
        return {col["name"] for col in sa.inspect(c).get_columns(table)}


def test_0007_keeps_rollouts_and_devices_both_ways(db_url: str, home: Path) -> None:
    inventory = SqlInventory(db_url)
    inventory.add_device(Device(name="kiosk-1", host="127.0.0.1"))
    log = SqlRolloutLog(inventory)
    lora = Artifact("m+faq", "q4_k_m", "lora", "a" * 64, 3 << 20, "/faq.gguf", "b" * 64)
    log.create(Rollout("r1", "m+faq", "running", {}, [1]),
               [DeviceJob("kiosk-1", 0, 0, Step.CHECKING, lora)])
    [job] = log.load("r1")[1]
    assert job.artifact == lora and job.artifact.adapter == "faq"
    job.step = Step.COMMITTED
    log.record("r1", job)
    device = inventory.get_device("kiosk-1")
    assert (device.adapter, device.adapter_sha256, device.sha256) == ("faq", "a" * 64, "")

    engine = engine_for(db_url, migrate=False)
    schema.downgrade(engine, db_url, "0007_device_models")
    for table, names in NEW.items():
        assert not names & _columns(engine, table)
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT step FROM rollout_device")).scalar() == "committed"
        assert c.execute(sa.text("SELECT name FROM device")).scalar() == "kiosk-1"
    schema.upgrade(engine, db_url, "0008_adapter_rollouts")
    for table, names in NEW.items():
        assert names <= _columns(engine, table)
    schema.upgrade(engine, db_url, HEAD)  # the rows below are read by this code's tables
    [back] = log.load("r1")[1]  # rows from before the revision: a model, no adapter
    assert back.artifact is not None and back.artifact.base_sha256 == ""
    assert inventory.get_device("kiosk-1").adapter == ""
    assert schema.status(engine).up_to_date and schema.drift(engine) == []
