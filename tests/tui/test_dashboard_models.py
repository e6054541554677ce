"""The dashboard on a device that runs several models (Pilot, the fixed fleet of
tests/tui/fleet_data.py plus the models the collector would have stored): the fleet table
counts them, the filter finds a device by a model's alias, the device view lists every one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from textual.widgets import DataTable, Static

from controller.adapters.device_models_db import SqlDeviceModels
from controller.core.device_models import DeviceModel
from controller.dashboard.app import make_dashboard
from controller.dashboard.device_view import DeviceScreen
from controller.services.context import Fleet
from tests.tui.fleet_data import fill


async def _until(pilot: Any, check: Any, what: str) -> None:
    for _ in range(300):  # bounded: at most ~15 s
        if check():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _look_at_lab3(words: str, part: str) -> dict[str, Any]:
    """What the dashboard shows: lab-3's fleet row ("lab-3"), the devices left by filtering
    on ``words`` ("filtered"), and the ``part`` of the first one's device view ("view")."""
    seen: dict[str, Any] = {}

    async def drive() -> None:
        app = make_dashboard(Fleet.open(), refresh_s=0, collect=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.refreshes >= 1, "the first read")
            devices = app.query_one("#devices", DataTable)
            rows = [[str(c) for c in devices.get_row_at(i)] for i in range(devices.row_count)]
            seen["lab-3"] = next(r for r in rows if r[0] == "lab-3")
            await pilot.press("slash")
            for ch in words:
                await pilot.press(ch)
            seen["filtered"] = [str(devices.get_row_at(i)[0])
                                for i in range(devices.row_count)]
            devices.focus()
            devices.move_cursor(row=0)
            await pilot.press("enter")
            await _until(pilot, lambda: isinstance(app.screen, DeviceScreen)
                         and app.screen.reads >= 1, "the device view")
            seen["view"] = str(app.screen.query_one(part, Static).render())

    asyncio.run(drive())
    return seen


def test_every_model_of_a_device_is_shown(home: Path) -> None:
    fleet = Fleet.open()
    fill(fleet)
    SqlDeviceModels(fleet.inventory.engine).store([("lab-3", [
        DeviceModel("tiny-llama", "q8_0", "a" * 64, ("assistant",), True, True, False,
                    300 * 2**20, time.time() - 120),
        DeviceModel("tiny-mlp", "fp32", "c" * 64, (), False, False, False, 48 * 2**20)])])
    seen = _look_at_lab3("assistant", "#device-store")
    assert "tiny-llama +1" in seen["lab-3"]
    assert seen["filtered"] == ["lab-3"]
    store = seen["view"]
    assert "models 2" in store
    assert "tiny-llama q8_0 (assistant, pinned, resident), 300 MiB, used 2m ago" in store
    assert "tiny-mlp fp32 (unloaded), 48 MiB" in store


def test_the_deployed_adapter_is_shown_and_found(home: Path) -> None:
    """A device whose base runs a LoRA adapter the fleet deployed: the fleet table reads
    MODEL+ADAPTER, the filter finds it by the adapter's name, the device view says so."""
    fleet = Fleet.open()
    fill(fleet)
    fleet.inventory.update_device("lab-3", adapter="kiosk-faq", adapter_sha256="f" * 64)
    seen = _look_at_lab3("kiosk-faq", "#device-head")
    assert any(cell.endswith("+kiosk-faq") for cell in seen["lab-3"]), seen["lab-3"]
    assert seen["filtered"] == ["lab-3"]
    assert "with adapter kiosk-faq" in seen["view"]
