"""Revision 0011_calibration_backend on SQLite and a real PostgreSQL: a calibration is kept
with the backend it was measured on; calibrations from before it read as measured on the CPU
(agents ran llama.cpp without GPU offload then), uncalibrated devices as none; the downgrade
drops the column and nothing else."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from controller.adapters import schema
from controller.adapters.db import engine_for
from controller.adapters.inventory import SqlInventory
from controller.adapters.tables import Device
from controller.migrations import HEAD


def _columns(engine: sa.Engine) -> set[str]:
    with engine.connect() as c:
        return {col["name"] for col in sa.inspect(c).get_columns("device")}


def test_calibrations_keep_their_backend_and_old_ones_read_as_cpu(db_url: str,
                                                                  home: Path) -> None:
    inv = SqlInventory(db_url)
    inv.add_device(Device(name="cal", host="192.0.2.1", decode_efficiency=0.6,
                          decode_efficiency_backend="cuda"))
    inv.add_device(Device(name="raw", host="192.0.2.2"))
    assert inv.get_device("cal").decode_efficiency_backend == "cuda"
    engine = engine_for(db_url, migrate=False)
    schema.downgrade(engine, db_url, "0010_rollout_device_held")
    assert "decode_efficiency_backend" not in _columns(engine)
    assert {"decode_efficiency", "adapter_sha256"} <= _columns(engine)
    schema.upgrade(engine, db_url, HEAD)
    assert (inv.get_device("cal").decode_efficiency_backend,
            inv.get_device("raw").decode_efficiency_backend) == ("cpu", "")
    assert inv.get_device("cal").decode_efficiency == 0.6
    assert schema.status(engine).up_to_date and schema.drift(engine) == []
