"""Several models per device, end to end on a real lab (sshd, agents, llama.cpp,
onnxruntime): tiny-llama and the tiny ONNX model run beside each other, `fleet status --json`
lists both, an alias is given and repointed, `--replace` leaves one model, and a rollout
killed mid-way and resumed keeps its alias and pinning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.contract import AGENT_CAPABILITIES
from agent.rpc import agent_pb2 as pb
from controller.core.compat import MULTI_MODEL
from controller.services import history
from controller.services.context import Fleet
from tests.conftest import Cli, Result

pytestmark = pytest.mark.skipif(
    MULTI_MODEL not in {c.value for c in AGENT_CAPABILITIES},
    reason="this agent holds one model at a time (the multi-model agent is not merged)")

FLEET = str(Path(sys.executable).parent / "fleet")


@pytest.fixture(autouse=True)
def quick_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_ROLLOUT_HEARTBEAT_S", "0.2")


def _store(fleet: Fleet) -> pb.GetStoreResponse:
    device = fleet.inventory.list_devices()[0]
    with fleet.client(device) as client:
        return client.get_store()


def _slots(fleet: Fleet) -> dict[str, pb.ModelSlot]:
    return {s.name: s for s in _store(fleet).slots if s.active_sha256}


def _deploy(cli: Cli, *args: str) -> dict[str, object]:
    result = cli("deploy", *args, "--group", "lab", "--json")
    assert result.code == 0, result.err + result.out
    report = json.loads(result.out)
    assert {o["status"] for o in report["outcomes"]} <= {"committed", "unchanged"}, report
    return dict(report)


def _status_models(cli: Cli) -> list[dict[str, object]]:
    result = cli("status", "--json")
    assert result.code == 0, result.err
    [device] = json.loads(result.out)["devices"]
    assert device["state"] == "deployed", device  # a model beside it is no drift
    return list(device["models"])


def test_two_models_beside_an_alias_repointed_then_replace(
        cli: Cli, lab: Callable[..., Result], home: Path) -> None:
    lab("--devices", "1", "--profiles", "lab-n100-16gb")
    fleet = Fleet.open()
    _deploy(cli, "tiny-llama", "--prefer", "speed")
    _deploy(cli, "tiny-mlp")
    slots = _slots(fleet)
    assert set(slots) == {"tiny-llama", "tiny-mlp"}  # beside, not instead
    assert {m["name"] for m in _status_models(cli)} == {"tiny-llama", "tiny-mlp"}
    # the plan counted what stays: tiny-mlp was chosen beside tiny-llama
    plan = cli("plan", "tiny-mlp", "--group", "lab", "--json")
    assert "beside tiny-llama" in json.loads(plan.out)["plans"][0]["reason"]

    _deploy(cli, "tiny-llama", "--prefer", "speed", "--alias", "assistant")
    assert list(_slots(fleet)["tiny-llama"].aliases) == ["assistant"]
    said = cli("generate", "The edge", "--group", "lab", "--model", "assistant", "--json")
    assert said.code == 0, said.err
    [answer] = json.loads(said.out)["results"]
    assert answer["completion_tokens"] > 0 and answer["text"]
    _deploy(cli, "tiny-mlp", "--alias", "assistant", "--pin")  # repointed
    slots = _slots(fleet)
    assert list(slots["tiny-mlp"].aliases) == ["assistant"] and slots["tiny-mlp"].pinned
    assert list(slots["tiny-llama"].aliases) == []
    models = {m["name"]: m for m in _status_models(cli)}
    assert models["tiny-mlp"]["aliases"] == ["assistant"] and models["tiny-mlp"]["pinned"]
    assert models["tiny-llama"]["aliases"] == []

    _deploy(cli, "tiny-llama", "--prefer", "speed", "--replace")
    assert set(_slots(fleet)) == {"tiny-llama"}
    assert [m["name"] for m in _status_models(cli)] == ["tiny-llama"]


def test_a_resumed_rollout_keeps_its_alias_and_pin(cli: Cli, lab: Callable[..., Result],
                                                   home: Path) -> None:
    lab("--devices", "1", "--profiles", "lab-n100-16gb")
    fleet = Fleet.open()
    _deploy(cli, "tiny-llama", "--prefer", "speed")
    env = dict(os.environ, FLEET_HOME=str(home), FLEET_FAILPOINTS="after:staged")
    killed = subprocess.run([FLEET, "deploy", "tiny-mlp", "--group", "lab", "--alias",
                             "classifier", "--pin", "--json"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert "tiny-mlp" not in _slots(fleet)  # staged, not loaded
    rollout = history.recent(fleet, 1)[0].rollout
    time.sleep(1.5)  # the killed controller's heartbeat goes stale
    resumed = cli("rollouts", "resume", rollout, "--json")
    assert resumed.code == 0, resumed.err + resumed.out
    slots = _slots(fleet)
    assert set(slots) == {"tiny-llama", "tiny-mlp"}
    assert list(slots["tiny-mlp"].aliases) == ["classifier"] and slots["tiny-mlp"].pinned


def test_undeploy_takes_one_model_off_and_the_last_only_when_asked(
        cli: Cli, lab: Callable[..., Result], home: Path) -> None:
    lab("--devices", "1", "--profiles", "lab-n100-16gb")
    fleet = Fleet.open()
    _deploy(cli, "tiny-llama", "--prefer", "speed", "--alias", "assistant")
    _deploy(cli, "tiny-mlp")

    alias = cli("undeploy", "assistant", "--group", "lab")
    assert alias.code != 0 and "Traceback" not in alias.err
    assert "'assistant' is an alias of tiny-llama, not a model" in alias.out + alias.err

    taken = cli("undeploy", "tiny-mlp", "--group", "lab", "--json")
    assert taken.code == 0, taken.err + taken.out
    [outcome] = json.loads(taken.out)["outcomes"]
    assert outcome["status"] == "removed"
    assert outcome["reason"] == "tiny-mlp taken off; still serving tiny-llama"
    assert set(_slots(fleet)) == {"tiny-llama"}  # the device's own answer
    assert [m["name"] for m in _status_models(cli)] == ["tiny-llama"]  # the fleet's record
    said = cli("generate", "The edge", "--group", "lab", "--model", "assistant", "--json")
    assert said.code == 0, said.err  # the other model and its alias still serve
    again = cli("undeploy", "tiny-mlp", "--group", "lab", "--json")
    assert again.code == 0 and json.loads(again.out)["outcomes"][0]["status"] == "absent"

    last = cli("undeploy", "tiny-llama", "--group", "lab")
    assert last.code != 0 and "Traceback" not in last.err
    assert "the only model on the device" in last.out and "--allow-empty" in last.err
    assert set(_slots(fleet)) == {"tiny-llama"}  # nothing was done
    empty = cli("undeploy", "tiny-llama", "--group", "lab", "--allow-empty", "--json")
    assert empty.code == 0, empty.err + empty.out
    assert _slots(fleet) == {}
    [device] = fleet.inventory.list_devices()
    assert (device.state, device.model) == ("online", "")

    # the file stayed on the device as the slot's previous model: a new deploy sends nothing
    report = _deploy(cli, "tiny-mlp")
    [again_out] = report["outcomes"]  # type: ignore[index]
    assert again_out["status"] == "committed" and again_out["bytes_sent"] == 0
    assert set(_slots(fleet)) == {"tiny-mlp"}
