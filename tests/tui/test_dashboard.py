"""The dashboard, driven by Textual's Pilot, reading a database the real collector filled from
a real lab: what the user sees in the fleet, device, rollout and alert views, with one agent
killed too."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.widgets import DataTable, Sparkline, Static

from controller.dashboard.app import FleetDashboard, FleetRefreshed, make_dashboard
from controller.dashboard.device_view import DeviceScreen
from controller.dashboard.widgets import HelpScreen
from controller.services.context import Fleet
from tests.conftest import Cli, Result


def _cells(table: DataTable[Any]) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def _until(pilot: Any, check: Callable[[], bool], what: str) -> None:
    for _ in range(300):  # bounded: at most ~15 s
        if check():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_fleet_device_rollout_views_from_collected_telemetry(
        cli: Cli, lab: Callable[..., Result]) -> None:
    lab("--devices", "2", "--profiles", "lab-pi4-2gb,lab-n100-16gb")
    assert cli("deploy", "tiny-llama", "--group", "lab").code == 0
    for _ in range(3):
        assert cli("generate", "hi", "--group", "lab", "--max-tokens", "4").code == 0
    assert cli("collect").code == 0  # the real collector fills the database
    refreshed: list[FleetRefreshed] = []
    seen: dict[str, Any] = {}

    async def drive() -> None:
        app = make_dashboard(Fleet.open(), refresh_s=0, collect=False)
        async with app.run_test(size=(100, 30), message_hook=lambda m: refreshed.append(m)
                                if isinstance(m, FleetRefreshed) else None) as pilot:
            await _until(pilot, lambda: app.refreshes >= 1, "the first read")
            devices = app.query_one("#devices", DataTable)
            seen["rows"] = _cells(devices)
            seen["summary"] = str(app.query_one("#summary", Static).render())
            await pilot.press("s")  # sort by the next column (state), then reverse
            await pilot.press("S")
            seen["sorted"] = app.sort_key, app.sort_reverse
            await pilot.press("slash")
            for ch in "lab-2":
                await pilot.press(ch)
            seen["filtered"] = [r[0] for r in _cells(devices)]
            await pilot.press("escape")
            seen["unfiltered"] = devices.row_count
            devices.focus()
            devices.move_cursor(row=[r[0] for r in _cells(devices)].index("lab-1"))
            await pilot.press("enter")
            await _until(pilot, lambda: isinstance(app.screen, DeviceScreen)
                         and app.screen.reads >= 1, "the device view")
            screen = app.screen
            seen["head"] = str(screen.query_one("#device-head", Static).render())
            seen["tps"] = screen.query_one("#spark-tps", Sparkline).data
            seen["prediction"] = str(screen.query_one("#device-prediction", Static).render())
            seen["store"] = str(screen.query_one("#device-store", Static).render())
            seen["recent"] = _cells(screen.query_one("#device-recent", DataTable))
            await pilot.press("escape")
            await pilot.press("2")
            seen["rollout_head"] = str(app.query_one("#rollout-head", Static).render())
            seen["steps"] = _cells(app.query_one("#rollout-steps", DataTable))
            await pilot.press("question_mark")
            seen["help"] = isinstance(app.screen, HelpScreen)

    asyncio.run(drive())
    assert refreshed
    rows = {r[0]: r for r in seen["rows"]}
    assert set(rows) == {"lab-1", "lab-2"}
    assert "deployed" in rows["lab-1"][1] and rows["lab-1"][2] == "q2_k"
    assert rows["lab-2"][2] == "f16" and float(rows["lab-1"][4]) > 0  # tok/s
    assert float(rows["lab-1"][7]) > 0  # J/token (estimated in a lab)
    assert "2 deployed" in seen["summary"] and "estimated J/tok" in seen["summary"]
    assert seen["sorted"] == ("state", True)
    assert seen["filtered"] == ["lab-2"] and seen["unfiltered"] == 2
    assert "lab-1" in seen["head"] and "tiny-llama q2_k" in seen["head"]
    assert max(seen["tps"]) > 0  # this hour's decode speed is plotted
    assert "predicted vs measured" in seen["prediction"]
    assert "active q2_k" in seen["store"] and "last rollout committed q2_k" in seen["store"]
    assert len(seen["recent"]) >= 3 and {r[2] for r in seen["recent"]} == {"ok"}
    assert "tiny-llama completed: 2 committed" in seen["rollout_head"]
    assert {r[0] for r in seen["steps"]} == {"lab-1", "lab-2"}
    assert seen["help"]


def test_a_killed_agent_shows_unreachable_with_an_alert(cli: Cli, lab: Callable[..., Result],
                                                        home: Path) -> None:
    lab("--devices", "2", "--profiles", "lab-pi4-2gb")
    assert cli("deploy", "tiny-llama", "--group", "lab").code == 0
    assert cli("collect").code == 0
    registry = json.loads((home / "lab" / "registry.json").read_text())
    victim = next(d for d in registry if d["name"] == "lab-2")
    os.killpg(victim["agent_pid"], signal.SIGKILL)
    assert cli("collect", "--timeout", "2").code == 4  # unreachable
    seen: dict[str, Any] = {}

    async def drive() -> None:
        app: FleetDashboard = make_dashboard(Fleet.open(), refresh_s=0, collect=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.refreshes >= 1, "the first read")
            seen["rows"] = _cells(app.query_one("#devices", DataTable))
            seen["summary"] = str(app.query_one("#summary", Static).render())
            await pilot.press("3")
            seen["alerts"] = _cells(app.query_one("#alert-table", DataTable))
            await pilot.press("1", "slash", *"state:unreachable")
            seen["filtered"] = [r[0] for r in _cells(app.query_one("#devices", DataTable))]

    asyncio.run(drive())
    rows = {r[0]: r for r in seen["rows"]}
    assert "unreachable" in rows["lab-2"][1] and "unreachable" in rows["lab-2"][8]
    assert "deployed" in rows["lab-1"][1]
    assert "1 unreachable" in seen["summary"] and "1 deployed" in seen["summary"]
    first = seen["alerts"][0]
    assert "critical" in first[0] and first[1:3] == ["lab-2", "unreachable"]
    assert seen["filtered"] == ["lab-2"]


def test_dashboard_falls_back_to_a_summary_without_a_tty(cli: Cli) -> None:
    assert cli("device", "add", "ghost", "--host", "127.0.0.98", "--agent-port", "1",
               "--group", "g").code == 0
    result = cli("dashboard")
    assert result.code == 0
    assert "ghost" in result.out and "unreachable" in result.out
