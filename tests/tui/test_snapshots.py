"""Reviewed SVG snapshots of the fleet, device and rollout views at 100x30 on a fixed fleet
(tests/tui/fleet_data.py): one device unreachable, one throttling, one drifted, a rollout in
flight. Update only after looking at the SVGs: pytest tests/tui --snapshot-update."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable

from controller.dashboard.app import FleetDashboard, make_dashboard
from controller.services.context import Fleet
from tests.tui.fleet_data import fill

SIZE = (100, 30)


@pytest.fixture(autouse=True)
def midday(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time at noon, whatever the hour: the fixed fleet's last hour of samples then lies
    within today, so "gCO2e today" is the same at 00:30 as at 15:00 (a fixed-offset zone;
    the views show no clock times)."""
    utc_hour = time.gmtime().tm_hour
    monkeypatch.setenv("TZ", f"NOON{utc_hour - 12:+d}")  # POSIX: the offset west of UTC
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _app(home: Path) -> FleetDashboard:
    fill(Fleet.open())
    return make_dashboard(Fleet.open(), refresh_s=0, collect=False)


async def _settled(pilot: Any) -> None:
    """Until every table on the screen has laid out its new rows: DataTable widens its columns
    for new rows when it is next idle, which on a loaded machine can come after a fixed
    pause (the header then rendered narrower than its cells)."""
    await pilot.pause(0.2)
    for _ in range(100):
        tables = list(pilot.app.screen.query(DataTable))
        if not any(t._new_rows or t._require_update_dimensions for t in tables):
            break
        await pilot.pause(0.05)
    # a header line cached at the old widths once survived the cells' re-render under load:
    # render every table afresh, then wait until the screen stops changing (bounded)
    for table in pilot.app.screen.query(DataTable):
        table._clear_caches()
        table.refresh()
    last, same = "", 0
    for _ in range(60):
        await pilot.pause(0.05)
        shot = pilot.app.export_screenshot()
        same = same + 1 if shot == last else 0
        last = shot
        if same >= 3:
            break


async def _loaded(pilot: Any) -> None:
    for _ in range(200):
        if pilot.app.refreshes >= 1:
            break
        await pilot.pause(0.05)
    await _settled(pilot)


def test_fleet_view(snap_compare: Callable[..., bool], home: Path) -> None:
    assert snap_compare(_app(home), terminal_size=SIZE, run_before=_loaded)


def test_device_view(snap_compare: Callable[..., bool], home: Path) -> None:
    async def open_lab3(pilot: Any) -> None:
        await _loaded(pilot)
        await pilot.press("down", "down", "enter")
        for _ in range(200):
            if getattr(pilot.app.screen, "reads", 0) >= 1:
                break
            await pilot.pause(0.05)
        await _settled(pilot)

    assert snap_compare(_app(home), terminal_size=SIZE, run_before=open_lab3)


def test_rollout_view(snap_compare: Callable[..., bool], home: Path) -> None:
    async def rollouts(pilot: Any) -> None:
        await _loaded(pilot)
        await pilot.press("2")
        await _settled(pilot)

    assert snap_compare(_app(home), terminal_size=SIZE, run_before=rollouts)
