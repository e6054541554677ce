"""Revision 0007_device_models on SQLite and a real PostgreSQL: the per-device models table
and the request columns (model, adapter, load wait) are added beside the rows already there,
a rollout's commit and rollback keep a device's set of models in it, and the downgrade drops
exactly what the upgrade added."""

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
from controller.services.ports import Artifact, DeviceJob, ModelView, Rollout

REQUEST_COLUMNS = {"model", "adapter", "load_wait_ms"}
GIB = 2**30


def _tables(engine: sa.Engine) -> set[str]:
    with engine.connect() as c:
        return set(sa.inspect(c).get_table_names())


def _request_columns(engine: sa.Engine) -> set[str]:
    with engine.connect() as c:
        return {col["name"] for col in sa.inspect(c).get_columns("telemetry_request")}


def test_0007_adds_the_models_of_each_device_both_ways(db_url: str, home: Path) -> None:
    SqlInventory(db_url)  # creates the database at HEAD
    engine = engine_for(db_url, migrate=False)
    with engine.begin() as c:  # a request stored before the revision
        c.execute(sa.text(
            "INSERT INTO telemetry_request (device, epoch_no, seq, ts, model_id, ttft_ms, "
            "total_ms, prompt_tokens, completion_tokens, decode_tps, prefill_tps, outcome, "
            "energy_j, meter, peak_rss_bytes) VALUES ('k1', 1, 1, 1.0, 0, 1, 2, 3, 4, 5, 6, "
            "'ok', 0, 'none', 0)"))
    models = SqlDeviceModels(engine)
    kept = [DeviceModel("clf", "f32", "c" * 64, ("classify",), True, True, False, 40 * 2**20,
                        1_700_000_000.0),
            DeviceModel("tiny-llama", "q4_k_m", "a" * 64, ("assistant",), False, False, False,
                        6 * GIB)]  # 64-bit memory
    models.store([("k1", kept)])
    assert models.of(["k1"]) == {"k1": kept}
    schema.downgrade(engine, db_url, "0006_fanout")
    assert "device_model" not in _tables(engine)
    assert not REQUEST_COLUMNS & _request_columns(engine)
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT seq FROM telemetry_request")).scalar() == 1
    schema.upgrade(engine, db_url, "0007_device_models")
    assert _request_columns(engine) >= REQUEST_COLUMNS
    with engine.connect() as c:  # rows from before: no name, no adapter, no wait
        assert c.execute(sa.text("SELECT count(*) FROM device_model")).scalar() == 0
        row = c.execute(sa.text("SELECT model, adapter, load_wait_ms FROM telemetry_request")
                        ).one()
    assert tuple(row) == ("", "", 0)
    schema.upgrade(engine, db_url)  # later revisions on top: the models match the tables
    assert schema.status(engine).up_to_date and schema.drift(engine) == []


def test_a_rollout_keeps_the_set_of_models_of_a_device(db_url: str, home: Path) -> None:
    inventory = SqlInventory(db_url)
    inventory.add_device(Device(name="k1", host="127.0.0.1"))
    log = SqlRolloutLog(inventory)
    models = SqlDeviceModels(inventory.engine)
    clf = DeviceModel("clf", "f32", "c" * 64, ("assistant",), False, True, False, 2**20)
    models.store([("k1", [clf])])
    art = Artifact("tiny-llama", "q4", "gguf", "a" * 64, 2**20, "/m.gguf")
    job = DeviceJob("k1", 0, 0, Step.PLANNED, art, memory_bytes=5 * GIB)
    log.create(Rollout("r1", "tiny-llama", "running", {"aliases": ["assistant"],
                                                      "pinned": True, "replace": False}, [1]),
               [job])
    job.step = Step.COMMITTED
    log.record("r1", job)
    got = models.of()["k1"]
    assert [(m.name, m.aliases, m.pinned) for m in got] == [
        ("clf", (), False), ("tiny-llama", ("assistant",), True)]  # the alias moved
    assert got[1].memory_bytes == 5 * GIB
    job.step = Step.ROLLED_BACK  # (a later rollout of a variant given up: back to the old)
    log.record("r1", job, restored=ModelView("tiny-llama", "q8", "b" * 64))
    assert [(m.name, m.variant) for m in models.of()["k1"]] == [("clf", "f32"),
                                                                ("tiny-llama", "q8")]
