"""The dashboard, driven by Textual's Pilot against a real lab device."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.widgets import DataTable, Static

from controller.dashboard.app import FleetRefreshed, make_dashboard
from controller.services.context import Fleet
from tests.conftest import Cli, Result


def test_dashboard_shows_devices_variants_and_rollouts(cli: Cli,
                                                        lab: Callable[..., Result]) -> None:
    lab("--devices", "2", "--profiles", "lab-pi4-2gb,lab-n100-16gb")
    assert cli("deploy", "tiny-llama", "--group", "lab").code == 0
    assert cli("generate", "hi", "--group", "lab", "--max-tokens", "3").code == 0
    refreshed: list[FleetRefreshed] = []

    async def drive() -> tuple[list[list[str]], list[list[str]], str]:
        app = make_dashboard(Fleet.open(), refresh_s=0)
        async with app.run_test(message_hook=lambda m: refreshed.append(m)
                                if isinstance(m, FleetRefreshed) else None) as pilot:
            for _ in range(200):  # bounded: at most ~10 s
                if app.refreshes >= 1:
                    break
                await pilot.pause(0.05)
            await pilot.press("r")
            for _ in range(200):
                if app.refreshes >= 2:
                    break
                await pilot.pause(0.05)
            devices = app.query_one("#devices", DataTable)
            rollouts = app.query_one("#rollouts", DataTable)
            rows = [[str(c) for c in devices.get_row_at(i)] for i in range(devices.row_count)]
            rrows = [[str(c) for c in rollouts.get_row_at(i)] for i in range(rollouts.row_count)]
            summary = str(app.query_one("#summary", Static).render())
            return rows, rrows, summary

    rows, rollouts, summary = asyncio.run(drive())
    assert len(refreshed) >= 2  # the initial poll and the one asked for with `r`
    by_name = {r[0]: r for r in rows}
    assert by_name["lab-1"][3] == "deployed" and by_name["lab-1"][5] == "q2_k"
    assert by_name["lab-2"][5] == "f16"
    assert float(by_name["lab-1"][9]) > 0  # tokens/s of the last request
    assert float(by_name["lab-1"][12]) > 0 and by_name["lab-1"][13] == "estimated"  # J/token
    assert {r[2] for r in rollouts} == {"lab-1", "lab-2"}
    assert {r[5] for r in rollouts} == {"committed"}
    assert "2 devices, 2 online, 2 serving a model" in summary


def test_dashboard_falls_back_to_a_summary_without_a_tty(cli: Cli) -> None:
    assert cli("device", "add", "ghost", "--host", "127.0.0.98", "--agent-port", "1",
               "--group", "g").code == 0
    result = cli("dashboard")
    assert result.code == 0
    assert "ghost" in result.out and "unreachable" in result.out
