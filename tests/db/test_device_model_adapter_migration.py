"""Revision 0009_device_model_adapter on SQLite and a real PostgreSQL: each model row of a
device names the adapter its requests get by default (device_model.adapter); a committed
adapter rollout sets it on its base's row only; the downgrade drops the column and keeps
the rows."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from controller.adapters import schema
from controller.adapters.db import engine_for
from controller.adapters.device_models_db import SqlDeviceModels
from controller.adapters.inventory import SqlInventory
from controller.adapters.rollout_repo import SqlRolloutLog
from controller.adapters.tables import Device
from controller.core.device_models import DeviceModel
from controller.core.steps import Step
from controller.migrations import HEAD
from controller.services.ports import Artifact, DeviceJob, Rollout

BASE, OTHER = "b" * 64, "c" * 64


def _columns(engine: sa.Engine) -> set[str]:
    with engine.connect() as c:
        return {col["name"] for col in sa.inspect(c).get_columns("device_model")}


def test_an_adapter_is_named_on_its_base_and_the_column_goes_both_ways(
        db_url: str, home: Path) -> None:
    inventory = SqlInventory(db_url)
    inventory.add_device(Device(name="kiosk-1", host="127.0.0.1"))
    models = SqlDeviceModels(inventory.engine)
    models.store([("kiosk-1", [DeviceModel("assistant", "q4_k_m", BASE, resident=True),
                               DeviceModel("classifier", "int8", OTHER)])])
    log = SqlRolloutLog(inventory)
    lora = Artifact("assistant+faq", "q4_k_m", "lora", "a" * 64, 3 << 20, "/faq.gguf", BASE)
    log.create(Rollout("r1", "assistant+faq", "running", {}, [1]),
               [DeviceJob("kiosk-1", 0, 0, Step.CHECKING, lora)])
    [job] = log.load("r1")[1]
    job.step = Step.COMMITTED
    log.record("r1", job)
    assert [(m.name, m.adapter) for m in models.of(["kiosk-1"])["kiosk-1"]] == [
        ("assistant", "faq"), ("classifier", "")]

    engine = engine_for(db_url, migrate=False)
    schema.downgrade(engine, db_url, "0008_adapter_rollouts")
    assert "adapter" not in _columns(engine)
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM device_model")).scalar() == 2
    schema.upgrade(engine, db_url, HEAD)
    assert "adapter" in _columns(engine)
    assert {m.adapter for m in models.of(["kiosk-1"])["kiosk-1"]} == {""}  # rows from before
    assert schema.status(engine).up_to_date and schema.drift(engine) == []
