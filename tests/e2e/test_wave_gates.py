"""Wave gates on what a wave's devices served during the pause, read from the telemetry the
collector gathers from real agents: a wave that served too slowly stops the next."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from controller.services import history
from controller.services.context import Fleet
from tests.conftest import Cli, Result

FLEET = str(Path(sys.executable).parent / "fleet")


def _deploy_with_traffic(home: Path, cli: Cli, *gate: str) -> tuple[int, dict[str, object]]:
    """A two-wave deploy pausing 6 s; lab-1 (wave 1) serves requests during the pause."""
    env = dict(os.environ, FLEET_HOME=str(home))
    deploy = subprocess.Popen([FLEET, "deploy", "tiny-llama", "--group", "lab", "--json",
                               "--waves", "1,100%", "--wave-pause", "6s", *gate], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fleet = Fleet.open()
    deadline = time.monotonic() + 120
    while not any(s.stage == "committed" for v in history.rollout_views(fleet, 1)
                  for s in v.steps if s.device == "lab-1"):
        assert deploy.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    for _ in range(3):  # the app's traffic during the pause (bounded)
        assert cli("generate", "The kiosk", "--device", "lab-1", "--max-tokens", "4").code == 0
    out, err = deploy.communicate(timeout=180)
    return deploy.returncode, json.loads(out) if out else {"err": err}


def test_a_wave_that_served_too_slowly_stops_the_next(cli: Cli, lab: Callable[..., Result],
                                                      home: Path) -> None:
    lab("--devices", "2", "--profiles", "lab-n100-16gb")
    code, report = _deploy_with_traffic(home, cli, "--wave-max-p95-ttft", "0.001")
    assert code == 1, report
    assert report["status"] == "halted"
    steps = {o["device"]: o for o in report["outcomes"]}  # type: ignore[attr-defined]
    assert steps["lab-1"]["status"] == "committed"
    assert steps["lab-2"]["status"] == "halted" and steps["lab-2"]["bytes_sent"] == 0
    assert "lab-1 p95 TTFT" in steps["lab-2"]["reason"] and "--wave-max-p95-ttft 0.001" in (
        steps["lab-2"]["reason"])


def test_a_wave_within_its_gates_lets_the_next_start(cli: Cli, lab: Callable[..., Result],
                                                     home: Path) -> None:
    lab("--devices", "2", "--profiles", "lab-n100-16gb")
    code, report = _deploy_with_traffic(home, cli, "--wave-max-p95-ttft", "600000",
                                        "--wave-max-error-rate", "50%")
    assert code == 0, report
    assert {o["status"] for o in report["outcomes"]} == {"committed"}  # type: ignore[attr-defined]


def test_wave_gates_need_a_pause(cli: Cli, lab: Callable[..., Result]) -> None:
    lab("--devices", "1")
    bad = cli("deploy", "tiny-llama", "--group", "lab", "--waves", "1,100%",
              "--wave-max-error-rate", "2%")
    assert bad.code == 2 and "give --wave-pause or --wait-approval" in bad.err
