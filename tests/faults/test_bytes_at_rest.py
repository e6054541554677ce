"""Bytes that change on a device's disk after they were verified: the agent never activates
them again, quarantines them, reports them, and the next deploy sends them again without
blaming the model."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.integrity import Fingerprint
from controller.services.context import Fleet
from tests.conftest import Cli, Result
from tests.faults.conftest import (
    check_invariants,
    deploy,
    flip,
    get_store,
    store_dir,
    variant_sha,
    wait_for,
)

MAGIC = 0  # the GGUF magic: llama.cpp refuses the file outright
MIDDLE = 5 * 1024 * 1024  # inside the weights: the file still loads, its output is wrong


def _two_models(cli: Cli, lab: Callable[..., Result]) -> tuple[str, str, int, int]:
    """A device that ran q2_k, then q8_0 (active), q2_k kept as its previous model."""
    lab("--devices", "1", "--profiles", "lab-orin-nano-8gb")
    first = deploy(cli, "tiny-llama", "--group", "lab", "--prefer", "speed")
    assert first.code == 0, first.err
    second = deploy(cli, "tiny-llama", "--group", "lab")
    assert second.code == 0, second.err
    q2, q2_size = variant_sha("q2_k")
    q8, q8_size = variant_sha("q8_0")
    check_invariants({"lab-1": {q8}})
    return q2, q8, q2_size, q8_size


@pytest.mark.parametrize("offset", [MAGIC, MIDDLE])
def test_a_corrupt_active_blob_is_not_restored_after_a_restart(
        cli: Cli, lab: Callable[..., Result], home: Path, offset: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_AGENT_WATCH_S", "0")  # the restore's own check, nothing else
    q2, q8, _, q8_size = _two_models(cli, lab)
    flip(store_dir(home) / "blobs" / q8, offset)
    assert cli("lab", "restart", "lab-1").code == 0
    store = check_invariants({"lab-1": {q2}}, agree=False)["lab-1"]
    assert store.reverted_sha256 == q8 and "changed on the device's disk" in \
        store.reverted_reason
    [record] = store.quarantined
    assert record.sha256 == q8 and record.found_by == "restore" and record.bytes_kept
    status = cli("status", "--group", "lab", "--json")
    [row] = json.loads(status.out)["devices"]
    assert row["state"] == "drifted" and row["variant"] == "q2_k"
    # the next deploy sends it again: the device's disk, not the model, was at fault
    again = deploy(cli, "tiny-llama", "--group", "lab")
    assert again.code == 0, again.err
    outcome = again.outcomes["lab-1"]
    assert outcome["status"] == "committed" and outcome["bytes_sent"] == q8_size
    check_invariants({"lab-1": {q8}})


@pytest.mark.parametrize("how", ["switch back", "deploy again"])
def test_a_corrupt_held_blob_is_sent_again_not_trusted(
        cli: Cli, lab: Callable[..., Result], home: Path, how: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_AGENT_WATCH_S", "0")
    q2, q8, q2_size, q8_size = _two_models(cli, lab)
    if how == "switch back":  # away from q2_k and back: its held copy went bad meanwhile
        flip(store_dir(home) / "blobs" / q2, MIDDLE)
        result = deploy(cli, "tiny-llama", "--group", "lab", "--prefer", "speed")
        target, size = q2, q2_size
    else:  # the running model's copy went bad; deploying the same model again
        flip(store_dir(home) / "blobs" / q8, MIDDLE)
        result = deploy(cli, "tiny-llama", "--group", "lab")
        target, size = q8, q8_size
    assert result.code == 0, result.err
    outcome = result.outcomes["lab-1"]
    assert outcome["status"] == "committed" and outcome["bytes_sent"] == size
    check_invariants({"lab-1": {target}})
    assert [(r.sha256, r.found_by) for r in get_store().quarantined] == [(target, "check")]


def test_broken_magic_under_an_unchanged_fingerprint_is_data_loss_not_the_model(
        cli: Cli, lab: Callable[..., Result], home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Rot the fingerprint cannot see (below the file system): llama.cpp refuses the file, the
    agent hashes it again before blaming the model, and the deploy sends it once more."""
    monkeypatch.setenv("FLEET_AGENT_WATCH_S", "0")
    q2, q8, q2_size, _ = _two_models(cli, lab)
    store = store_dir(home)
    blob = store / "blobs" / q2
    flip(blob, MAGIC)
    ledger = json.loads((store / "verified.json").read_text())
    ledger[q2] = Fingerprint.of(blob).__dict__
    (store / "verified.json").write_text(json.dumps(ledger))
    result = deploy(cli, "tiny-llama", "--group", "lab", "--prefer", "speed")
    assert result.code == 0, result.err
    outcome = result.outcomes["lab-1"]
    assert outcome["status"] == "committed" and not outcome["model_failed"]
    assert outcome["bytes_sent"] == q2_size  # held, refused, found corrupt, sent once more
    [record] = get_store().quarantined
    assert record.sha256 == q2 and record.found_by == "load"
    check_invariants({"lab-1": {q2}})


def test_the_agent_notices_bytes_changing_under_its_running_model(
        cli: Cli, lab: Callable[..., Result], home: Path) -> None:
    q2, q8, _, _ = _two_models(cli, lab)
    flip(store_dir(home) / "blobs" / q8, MIDDLE)
    # no request, no restart: the agent's watcher sees the fingerprint move and re-hashes
    def serving_previous() -> bool:
        fleet = Fleet.open()
        with fleet.client(fleet.inventory.get_device("lab-1")) as client:
            return any(m.active and m.sha256 == q2 and m.state == "loaded"
                       for m in client.list_models())

    wait_for(serving_previous, "the agent to give up its corrupt model", timeout_s=60)
    check_invariants({"lab-1": {q2}}, agree=False)
    assert [r.found_by for r in get_store().quarantined] == ["watch"]
    generated = cli("generate", "hello", "--group", "lab", "--max-tokens", "3")
    assert generated.code == 0, generated.err
    assert not os.path.exists(store_dir(home) / "blobs" / q8)
