"""kill -9 of the controller and of an agent in the middle of a deploy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.services.context import Fleet
from tests.conftest import Cli, Result
from tests.faults.conftest import (
    MIB,
    check_invariants,
    deploy,
    get_store,
    store_dir,
    variant_sha,
    wait_for,
)


def test_controller_killed_mid_upload_then_the_next_deploy_resumes(
        cli: Cli, lab: Callable[..., Result], home: Path) -> None:
    lab("--devices", "1", "--netns", "--profiles", "lab-orin-nano-8gb")
    first = deploy(cli, "tiny-llama", "--group", "lab", "--prefer", "speed")
    assert first.code == 0, first.err
    old, _ = variant_sha("q2_k")
    new, size = variant_sha("q8_0")
    part = store_dir(home) / "incoming" / f"{new}.part"
    controller = subprocess.Popen(
        [sys.executable, "-c", "from controller.cli.app import run; run()", "deploy",
         "tiny-llama", "--group", "lab", "--bwlimit", "4", "--json"],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: part.exists() and part.stat().st_size >= 8 * MIB, "the upload")
    finally:
        os.killpg(controller.pid, signal.SIGKILL)
        controller.wait(timeout=30)
    # the device runs its model, the fleet's records say so, the partial upload waits
    check_invariants({"lab-1": {old}})
    assert part.stat().st_size >= 8 * MIB
    again = deploy(cli, "tiny-llama", "--group", "lab")
    assert again.code == 0, again.err
    outcome = again.outcomes["lab-1"]
    assert outcome["status"] == "committed" and outcome["variant"] == "q8_0"
    assert int(outcome["bytes_sent"]) <= size - 8 * MIB  # resumed, not restarted
    check_invariants({"lab-1": {new}})


def test_agent_killed_mid_load_names_the_device_once_and_keeps_its_model(
        cli: Cli, lab: Callable[..., Result], home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    lab("--devices", "1", "--netns", "--profiles", "lab-orin-nano-8gb")
    first = deploy(cli, "tiny-llama", "--group", "lab", "--prefer", "speed")
    assert first.code == 0, first.err
    old, _ = variant_sha("q2_k")
    new, size = variant_sha("q8_0")
    # the agent SIGKILLs itself once the new model's worker is up, before it is activated
    monkeypatch.setenv("FLEET_AGENT_FAILPOINTS", "load.after_worker")
    assert cli("lab", "restart", "lab-1").code == 0
    monkeypatch.delenv("FLEET_AGENT_FAILPOINTS")
    killed = deploy(cli, "tiny-llama", "--group", "lab")
    assert killed.code == 4  # the only unfinished device is pending (unreachable)
    outcome = killed.outcomes["lab-1"]
    # the agent went away mid-load: pending (the next deploy or a resume asks the device)
    assert outcome["status"] == "pending" and "not reachable" in str(outcome["reason"])
    assert not str(outcome["reason"]).startswith("lab-1")  # the row names the device
    assert int(outcome["bytes_sent"]) == size  # the whole file went before the kill
    error = killed.err.splitlines()[0]
    assert error.count("lab-1") == 1, error
    # a lab device is rescued through the lab; its agent comes back on its own model
    rescued = cli("device", "rescue", "lab-1")
    assert rescued.code == 0 and "agent answering" in rescued.out, rescued.out + rescued.err
    check_invariants({"lab-1": {old}})
    again = deploy(cli, "tiny-llama", "--group", "lab")
    assert again.code == 0, again.err
    assert again.outcomes["lab-1"]["bytes_sent"] == 0  # verified before the kill: held
    check_invariants({"lab-1": {new}})
    assert get_store().previous_sha256 == old
    assert Fleet.open().inventory.get_device("lab-1").variant == "q8_0"
