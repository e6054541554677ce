"""Rollout safety end to end: a model that cannot run stops at its canary (real agents, a real
mis-exported GGUF that llama.cpp refuses), and deploy commits what it loads on trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from agent.contract import sha256_file
from controller.adapters.device_link import load_request
from controller.lab import read_registry
from controller.services import history
from controller.services.context import Fleet
from controller.services.manifests import manifest_signer
from controller.services.ports import Artifact, LoadOrder
from controller.testmodels import TinyLlamaSpec, write_tiny_llama_f16
from tests.conftest import Cli, Result


def _outcomes(result: Result) -> dict[str, dict[str, object]]:
    return {o["device"]: o for o in json.loads(result.out)["outcomes"]}


def _active(fleet: Fleet) -> dict[str, str]:
    running = {}
    for device in fleet.inventory.list_devices():
        with fleet.client(device) as client:
            running[device.name] = next(m.sha256 for m in client.list_models() if m.active)
    return running


def test_a_model_that_cannot_load_stops_at_its_canary(cli: Cli, lab: Callable[..., Result],
                                                      home: Path, tmp_path: Path) -> None:
    lab("--devices", "3", "--profiles", "lab-n100-16gb")
    first = cli("deploy", "tiny-llama", "--group", "lab", "--json")
    assert first.code == 0, first.err
    assert {o["status"] for o in _outcomes(first).values()} == {"committed"}
    fleet = Fleet.open()
    before = _active(fleet)
    assert len(set(before.values())) == 1  # one variant everywhere: one canary for all

    # a mis-exported file: its header declares 7 blocks, it carries 6
    broken = tmp_path / "broken.gguf"
    write_tiny_llama_f16(broken, TinyLlamaSpec(declared_layers=7))
    added = cli("model", "add", "broken-llama", str(broken))
    assert added.code == 0, added.err

    # (at ctx 512: its header's extra block makes it need more than the default context allows;
    # --replace: it is to run instead of tiny-llama, not in the memory tiny-llama leaves)
    result = cli("deploy", "broken-llama", "--group", "lab", "--ctx", "512", "--replace",
                 "--json")
    assert result.code == 1
    assert "halted: 1 of 3 devices failed, 2 not done" in result.err
    outcomes = _outcomes(result)
    failed = [o for o in outcomes.values() if o["status"] == "failed"]
    halted = [o for o in outcomes.values() if o["status"] == "halted"]
    assert len(failed) == 1 and len(halted) == 2, outcomes
    assert failed[0]["model_failed"] is True
    assert "could not load it, kept its current model" in str(failed[0]["reason"])
    assert all(o["bytes_sent"] == 0 for o in halted)
    assert all(f"stopped after the new model failed on {failed[0]['device']}" in str(o["reason"])
               for o in halted)
    # the rollout's log keeps every device's outcome, for `fleet rollouts` and the dashboard
    rollout = json.loads(result.out)["rollout"]
    logged = json.loads(cli("rollouts", "show", rollout[:6], "--json").out)
    assert sorted(d["step"] for d in logged["devices"]) == ["failed", "halted", "halted"]
    assert logged["summary"]["status"] == "halted"
    listed = json.loads(cli("rollouts", "--json").out)["rollouts"]
    assert listed[0]["rollout"] == rollout and listed[0]["steps"] == {"failed": 1, "halted": 2}

    # every device still serves tiny-llama; the halted ones never received a byte
    assert _active(fleet) == before
    sha = sha256_file(broken)
    for device in read_registry(home / "lab"):
        held = [p.name for p in Path(device.directory).rglob(f"{sha}*")]
        assert (held != []) == (device.name == failed[0]["device"]), (device.name, held)
    assert {d.model for d in fleet.inventory.list_devices()} == {"tiny-llama"}

    # without the guard rails every device tries it, and every one keeps its model
    anyway = cli("deploy", "broken-llama", "--group", "lab", "--ctx", "512", "--canary", "0",
                 "--max-failures", "0", "--replace", "--json")
    assert anyway.code == 1
    assert {o["status"] for o in _outcomes(anyway).values()} == {"failed"}
    assert all(o["model_failed"] for o in _outcomes(anyway).values())
    assert _active(fleet) == before


def test_canary_flags_are_checked(cli: Cli, lab: Callable[..., Result]) -> None:
    lab("--devices", "1")
    bad = cli("deploy", "tiny-llama", "--group", "lab", "--canary", "-1")
    assert bad.code == 2
    assert "--canary must be 0 or more" in bad.err
    bad = cli("deploy", "tiny-llama", "--group", "lab", "--max-failures", "lots")
    assert bad.code == 2
    assert "--max-failures 'lots' is neither a count nor a percentage" in bad.err
    assert "Traceback" not in bad.err


def test_deploy_confirms_what_it_loads_and_a_model_left_on_trial(
        cli: Cli, lab: Callable[..., Result], home: Path) -> None:
    lab("--devices", "1", "--profiles", "lab-n100-16gb")
    assert cli("deploy", "tiny-llama", "--device", "lab-1").code == 0
    fleet = Fleet.open()
    device = fleet.inventory.get_device("lab-1")
    with fleet.client(device) as client:
        assert not client.get_store().active_on_trial  # deploy committed it

    # an earlier deploy that loaded the fast variant on trial and never confirmed it
    plan = json.loads(cli("plan", "tiny-llama", "--device", "lab-1", "--prefer", "speed",
                          "--json").out)["plans"][0]
    variant = plan["chosen"]
    path = home / "models" / "tiny-llama" / f"tiny-llama-{variant}.gguf"
    sha = sha256_file(path)
    with fleet.client(device) as client:
        incoming = Path(client.get_store().incoming_dir)
        (incoming / sha).write_bytes(path.read_bytes())
        art = Artifact("tiny-llama", variant, "gguf", sha, path.stat().st_size, str(path))
        client.load_model(load_request(LoadOrder(art, 512, 0, trial=True),
                                       manifest_signer(fleet, "lab-1")))
        assert client.get_store().active_on_trial
    status = json.loads(cli("status", "--group", "lab", "--json").out)["devices"]
    assert status[0]["state"] == "on trial"

    result = cli("deploy", "tiny-llama", "--device", "lab-1", "--prefer", "speed", "--json")
    assert result.code == 0, result.err
    outcome = _outcomes(result)["lab-1"]
    assert outcome["status"] == "committed" and outcome["bytes_sent"] == 0
    assert str(outcome["reason"]).startswith("confirmed the model an earlier deploy left")
    with fleet.client(device) as client:
        store = client.get_store()
        assert store.active_sha256 == sha and not store.active_on_trial
    assert fleet.inventory.get_device("lab-1").variant == variant
    status = json.loads(cli("status", "--group", "lab", "--json").out)["devices"]
    assert status[0]["state"] == "deployed"


def test_a_model_that_misses_its_measured_gate_is_rolled_back(
        cli: Cli, lab: Callable[..., Result]) -> None:
    lab("--devices", "2", "--profiles", "lab-orin-nano-8gb")
    first = cli("deploy", "tiny-llama", "--group", "lab", "--min-tps", "1", "--max-ttft",
                "60000", "--json")
    assert first.code == 0, first.err
    for o in _outcomes(first).values():  # q8_0 on both, passing gates it was measured against
        assert o["variant"] == "q8_0" and "; measured " in str(o["reason"]), o
        assert "J/token (estimated)" in str(o["reason"])
    fleet = Fleet.open()
    before = _active(fleet)

    # the plan predicts q2_k at ~2,600 tok/s on this profile; the lab host decodes the tiny
    # model far slower, so the device's own measurement misses the gate
    result = cli("deploy", "tiny-llama", "--group", "lab", "--prefer", "speed",
                 "--min-tps", "1500", "--json")
    assert result.code == 1
    plans = json.loads(result.out)["plans"]
    assert {p["chosen"] for p in plans} == {"q2_k"}
    outcomes = _outcomes(result)
    assert sorted(str(o["status"]) for o in outcomes.values()) == ["halted", "rolled-back"]
    rolled = next(o for o in outcomes.values() if o["status"] == "rolled-back")
    reason = str(rolled["reason"])
    assert "measured decode" in reason and "< --min-tps 1500" in reason, reason
    assert reason.endswith("the device went back to q8_0")

    assert _active(fleet) == before
    status = json.loads(cli("status", "--group", "lab", "--json").out)["devices"]
    assert {(s["state"], s["variant"]) for s in status} == {("deployed", "q8_0")}
    # status shows the numbers of the model running now, not the rolled-back one's
    device = fleet.inventory.get_device(str(rolled["device"]))
    with fleet.client(device) as client:
        records = [r for r in client.telemetry(limit=100, tail=True).records
                   if r.outcome == "ok"]
    assert records[-1].variant == "q2_k"  # the gate's measured run came last
    running = [r for r in records if r.sha256 == before[device.name]][-1]
    shown = next(s for s in status if s["device"] == device.name)
    assert shown["last_tokens_per_s"] == running.decode_tokens_per_s
    shown = history.show(fleet, json.loads(result.out)["rollout"])
    row = next(d for d in shown.devices if d.device == rolled["device"])
    assert row.step == "rolled-back" and "--min-tps 1500" in row.reason


def test_a_deploy_where_nothing_fits_anywhere_fails_with_the_reason(
        cli: Cli, lab: Callable[..., Result]) -> None:
    lab("--devices", "1", "--profiles", "lab-pi4-2gb")
    result = cli("deploy", "tiny-llama", "--group", "lab", "--ctx", "2048", "--json")
    assert result.code == 1
    assert result.err.startswith("error: nothing deployed: no variant of tiny-llama fits")
    outcome = _outcomes(result)["lab-1"]
    assert outcome["status"] == "skipped" and "short by" in str(outcome["reason"])
    assert "Traceback" not in result.err


def test_ctrl_c_finishes_the_devices_in_flight_and_starts_no_other(
        cli: Cli, lab: Callable[..., Result], home: Path) -> None:
    lab("--devices", "3")
    fleet = Fleet.open()
    env = dict(os.environ, FLEET_HOME=str(home))
    deploy = subprocess.Popen(
        [str(Path(sys.executable).parent / "fleet"), "deploy", "tiny-llama", "--group", "lab",
         "--concurrency", "1", "--canary", "0", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _committed(fleet):  # the first device is done
        assert deploy.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    deploy.send_signal(signal.SIGINT)
    out, err = deploy.communicate(timeout=120)
    assert deploy.returncode == 1, err
    assert "Traceback" not in err and "interrupted" in err
    report = json.loads(out)
    assert report["status"] == "interrupted"
    outcomes = {o["device"]: o for o in report["outcomes"]}
    waiting = [o for o in outcomes.values() if o["status"] == "planned"]
    assert waiting and all("interrupted" in o["reason"] for o in waiting)
    assert {o["status"] for o in outcomes.values()} <= {"committed", "planned"}
    # a device not started never received a byte and runs nothing new ...
    for o in waiting:
        device = fleet.inventory.get_device(o["device"])
        with fleet.client(device) as client:
            store = client.get_store()
            assert store.active_sha256 == "" and store.blobs == []
    # ... and the rollout goes on where it stopped
    resumed = cli("rollouts", "resume", report["rollout"], "--json")
    assert resumed.code == 0, resumed.err
    assert {o["status"] for o in json.loads(resumed.out)["outcomes"]} == {"committed"}


def _committed(fleet: Fleet) -> bool:
    summaries = history.recent(fleet, 1)
    return bool(summaries) and summaries[0].counts.get("committed", 0) > 0


def test_stage_now_activate_later_with_nothing_to_send(cli: Cli, lab: Callable[..., Result],
                                                       home: Path) -> None:
    lab("--devices", "2")
    staged = cli("deploy", "tiny-llama", "--group", "lab", "--stage-only", "--json")
    assert staged.code == 0, staged.err
    outcomes = _outcomes(staged)
    assert {o["status"] for o in outcomes.values()} == {"staged"}
    assert all(int(str(o["bytes_sent"])) > 0 for o in outcomes.values())
    fleet = Fleet.open()
    for device in fleet.inventory.list_devices():
        with fleet.client(device) as client:
            store = client.get_store()
            # verified into the store and pinned; nothing runs yet
            assert store.active_sha256 == "" and store.staged_sha256 in store.blobs
    status = json.loads(cli("status", "--group", "lab", "--json").out)["devices"]
    assert {s["state"] for s in status} == {"idle"}

    later = cli("deploy", "tiny-llama", "--group", "lab", "--json")
    assert later.code == 0, later.err
    outcomes = _outcomes(later)
    assert {o["status"] for o in outcomes.values()} == {"committed"}
    assert all(o["bytes_sent"] == 0 for o in outcomes.values())
    for device in fleet.inventory.list_devices():
        with fleet.client(device) as client:
            store = client.get_store()
            assert store.active_sha256 and store.staged_sha256 == ""  # unpinned once active
