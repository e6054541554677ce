"""Rollouts that outlive their controller, against a real lab: the controller killed with
SIGKILL at every step, then `fleet rollouts resume` converges every device without sending
again what the devices hold; two deploys at once never interleave; waves stop at a failure
in wave 2; abort sends devices on trial back to their own previous model."""

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
from controller.testmodels import TinyLlamaSpec, write_tiny_llama_f16
from tests.conftest import Cli, Result

FLEET = str(Path(sys.executable).parent / "fleet")
KILL_POINTS = ["after:uploading", "upload.half", "after:staged", "after:loading",
               "after:on-trial", "after:checking", "after:committed"]


@pytest.fixture(autouse=True)
def quick_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dead controller is noticed after 6 heartbeats: 1.2 s here instead of 30 s."""
    monkeypatch.setenv("FLEET_ROLLOUT_HEARTBEAT_S", "0.2")


def _fleet(home: Path, *args: str, failpoints: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FLEET_HOME=str(home), FLEET_FAILPOINTS=failpoints)
    return subprocess.run([FLEET, *args], env=env, capture_output=True, text=True,
                          timeout=300)


def _truth(fleet: Fleet) -> dict[str, tuple[str, bool]]:
    """What every lab device runs, asked of its agent: (sha256, on trial)."""
    out = {}
    for device in fleet.inventory.list_devices():
        with fleet.client(device) as client:
            store = client.get_store()
        out[device.name] = (store.active_sha256, store.active_on_trial)
    return out


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_9_at_every_step_then_resume_converges(point: str, cli: Cli,
                                                    lab: Callable[..., Result],
                                                    home: Path) -> None:
    lab("--devices", "2", "--profiles", "lab-n100-16gb")
    # 64 MiB files take the 4-channel path; f16 (73 MiB) is what this profile gets
    killed = _fleet(home, "deploy", "tiny-llama", "--group", "lab", "--concurrency", "1",
                    "--canary", "0", "--json", failpoints=point)
    assert killed.returncode == -9, (killed.returncode, killed.stderr)
    fleet = Fleet.open()
    rollout = history.recent(fleet, 1)[0]
    time.sleep(1.5)  # its heartbeat goes stale
    listed = json.loads(cli("rollouts", "--json").out)["rollouts"][0]
    assert listed["rollout"] == rollout.rollout and listed["status"] == "interrupted"
    before = history.show(fleet, rollout.rollout)
    assert before.devices[1].step == "planned"  # the second device was never touched
    sent_before = {d.device: d.bytes_sent for d in before.devices}

    resumed = cli("rollouts", "resume", rollout.rollout[:8], "--json")
    assert resumed.code == 0, resumed.err
    report = json.loads(resumed.out)
    assert report["status"] == "completed"
    outcomes = {o["device"]: o for o in report["outcomes"]}
    assert {o["status"] for o in outcomes.values()} == {"committed"}, outcomes
    after = history.show(fleet, rollout.rollout)
    size = after.devices[0].size_bytes
    first = outcomes["lab-1"]
    resent = first["bytes_sent"] - sent_before["lab-1"]
    if point == "upload.half":
        assert 0 < resent < size  # the rest of the file, from the device's partial copy
    elif point != "after:uploading":
        assert resent == 0, (point, resent)  # the device held it: nothing sent again
    assert outcomes["lab-2"]["bytes_sent"] == size
    # the devices, the database and the rollout log agree
    truth = _truth(fleet)
    for d in after.devices:
        assert truth[d.device] == (d.sha256, False), (d.device, truth)
        row = fleet.inventory.get_device(d.device)
        assert (row.state, row.sha256) == ("deployed", d.sha256)
    assert SqlRolloutLog(fleet.inventory).holders(["lab-1", "lab-2"]) == {}  # leases released


def test_two_deploys_at_once_never_interleave(cli: Cli, lab: Callable[..., Result],
                                              home: Path) -> None:
    lab("--devices", "2", "--profiles", "lab-n100-16gb")
    env = dict(os.environ, FLEET_HOME=str(home))
    runs = [subprocess.Popen([FLEET, "deploy", "tiny-llama", "--group", "lab", "--json",
                              "--prefer", prefer], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for prefer in ("quality", "speed")]
    results = [r.communicate(timeout=300) + (r.returncode,) for r in runs]
    codes = sorted(code for _, _, code in results)
    assert codes == [0, 1], results
    winner = next(out for out, _, code in results if code == 0)
    loser_err = next(err for _, err, code in results if code == 1)
    rollout = json.loads(winner)["rollout"]
    assert f"rollout {rollout}" in loser_err and "nothing was sent" in loser_err
    reported = {o["device"]: o for o in json.loads(winner)["outcomes"]}
    fleet = Fleet.open()
    truth = _truth(fleet)
    shown = history.show(fleet, rollout)
    for d in shown.devices:  # what the winner reported is what every device runs
        assert reported[d.device]["status"] == "committed"
        assert truth[d.device] == (d.sha256, False)

    # with --wait, the second deploy waits for the first and then goes on
    first = subprocess.Popen([FLEET, "deploy", "tiny-llama", "--group", "lab", "--json",
                              "--prefer", "speed"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not history.recent(fleet, 1) or history.recent(fleet, 1)[0].rollout == rollout:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = _fleet(home, "deploy", "tiny-llama", "--group", "lab", "--json", "--wait", "5m")
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 0, second.stderr
    final = json.loads(second.stdout)
    truth = _truth(fleet)
    for d in history.show(fleet, final["rollout"]).devices:
        assert d.step == "committed" and truth[d.device] == (d.sha256, False)


def test_waves_stop_at_a_failure_in_wave_two(cli: Cli, lab: Callable[..., Result],
                                             home: Path) -> None:
    # a model whose small variant is sound and whose f16 is mis-exported: the Pi gets q2_k
    # (wave 1), the N100 the broken f16 (wave 2), the third device would come in wave 3
    lab("--devices", "3", "--profiles", "lab-pi4-2gb,lab-n100-16gb,lab-pi4-2gb")
    catalog = home / "catalog"
    catalog.mkdir()
    source = (Path(__file__).parents[2] / "controller" / "catalog" / "tiny-llama.toml")
    text = source.read_text().replace('name = "tiny-llama"', 'name = "wavetest"').replace(
        'builder = "tiny-llama"\n', "").replace("local://tiny-llama/tiny-llama-",
                                                 "local://wavetest/wavetest-")
    (catalog / "wavetest.toml").write_text(text)
    broken = home / "broken-f16.gguf"
    write_tiny_llama_f16(broken, TinyLlamaSpec(declared_layers=7))
    assert cli("model", "import", "wavetest", "f16", str(broken)).code == 0
    good = home / "models" / "tiny-llama" / "tiny-llama-q2_k.gguf"
    assert cli("model", "import", "wavetest", "q2_k", str(good)).code == 0

    result = cli("deploy", "wavetest", "--group", "lab", "--ctx", "512", "--waves", "1,2,100%",
                 "--json")
    assert result.code == 1
    report = json.loads(result.out)
    assert report["status"] == "halted"
    steps = {o["device"]: o["status"] for o in report["outcomes"]}
    assert steps == {"lab-1": "committed", "lab-2": "failed", "lab-3": "halted"}
    shown = json.loads(cli("rollouts", "show", report["rollout"], "--json").out)
    assert shown["waves"] == [1, 1, 1]
    assert [(d["device"], d["wave"]) for d in shown["devices"]] == [
        ("lab-1", 0), ("lab-2", 1), ("lab-3", 2)]
    assert "failed on lab-2" in shown["devices"][2]["reason"]


def test_abort_sends_a_device_on_trial_back_to_its_own_previous_model(
        cli: Cli, lab: Callable[..., Result], home: Path) -> None:
    lab("--devices", "1", "--profiles", "lab-n100-16gb")
    assert cli("deploy", "tiny-llama", "--group", "lab", "--prefer", "speed").code == 0
    fleet = Fleet.open()
    before = _truth(fleet)["lab-1"]
    killed = _fleet(home, "deploy", "tiny-llama", "--group", "lab", "--json",
                    failpoints="after:on-trial")
    assert killed.returncode == -9
    assert _truth(fleet)["lab-1"][1] is True  # the new model is on trial
    rollout = history.recent(fleet, 1)[0].rollout
    time.sleep(1.5)
    aborted = cli("rollouts", "abort", rollout, "--json")
    assert aborted.code == 0, aborted.err
    devices = json.loads(aborted.out)["devices"]
    assert devices[0]["step"] == "rolled-back" and "aborted by the operator" in (
        devices[0]["reason"])
    assert _truth(fleet)["lab-1"] == before
    assert history.show(fleet, rollout).summary.status == "aborted"
    again = cli("rollouts", "resume", rollout)
    assert again.code == 2 and "is aborted: nothing to do" in again.err
