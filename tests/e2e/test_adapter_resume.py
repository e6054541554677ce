"""An adapter rollout outlives its controller like a model's (tests/e2e/test_rollout_resume.py):
the controller SIGKILLed at a step, `fleet rollouts resume` loads the adapter on the base
each device was planned with, confirms one left on trial, and sends nothing the device
holds again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.adapters.rollout_repo import SqlRolloutLog
from controller.services import history
from controller.services.context import Fleet
from controller.testmodels import write_tiny_lora
from tests.conftest import Cli, Result

FLEET = str(Path(sys.executable).parent / "fleet")


@pytest.fixture(autouse=True)
def quick_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_ROLLOUT_HEARTBEAT_S", "0.2")


@pytest.mark.parametrize("point", ["after:staged", "after:on-trial"])
def test_kill_9_then_resume_converges(point: str, cli: Cli, lab: Callable[..., Result],
                                      home: Path, tmp_path: Path) -> None:
    lab("--devices", "2", "--profiles", "lab-n100-16gb")
    assert cli("deploy", "tiny-llama", "--group", "lab", "--prefer", "speed").code == 0
    path = tmp_path / "kiosk.gguf"
    write_tiny_lora(path)
    assert cli("adapter", "add", "kiosk", str(path), "--base", "tiny-llama").code == 0
    env = dict(os.environ, FLEET_HOME=str(home), FLEET_FAILPOINTS=point)
    killed = subprocess.run([FLEET, "deploy", "tiny-llama", "--adapter", "kiosk", "--group",
                             "lab", "--concurrency", "1", "--canary", "0", "--json"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, (killed.returncode, killed.stderr)
    fleet = Fleet.open()
    rollout = history.recent(fleet, 1)[0]
    time.sleep(1.5)  # its heartbeat goes stale
    before = history.show(fleet, rollout.rollout)
    assert [d.step for d in before.devices] == [point.split(":")[1], "planned"]
    sent_before = before.devices[0].bytes_sent

    resumed = cli("rollouts", "resume", rollout.rollout[:8], "--json")
    assert resumed.code == 0, resumed.err
    report = json.loads(resumed.out)
    assert report["status"] == "completed" and report["model"] == "tiny-llama+kiosk"
    outcomes = {o["device"]: o for o in report["outcomes"]}
    assert {o["status"] for o in outcomes.values()} == {"committed"}, outcomes
    assert outcomes["lab-1"]["bytes_sent"] == sent_before == path.stat().st_size  # not again
    assert outcomes["lab-2"]["bytes_sent"] == path.stat().st_size
    for device in fleet.inventory.list_devices():
        with fleet.client(device) as client:
            held = [(m.name, m.active, m.on_trial) for m in client.list_models()
                    if m.format == "lora"]
            assert held == [("kiosk", True, False)], (device.name, held)
            base = client.generate("The edge device", 12, adapter="").text
            assert client.generate("The edge device", 12).text != base
        assert fleet.inventory.get_device(device.name).adapter == "kiosk"
    assert SqlRolloutLog(fleet.inventory).holders(["lab-1", "lab-2"]) == {}
