"""A device's store on a small tmpfs that fills up while a model is uploaded to it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.core.select import Request, choose
from controller.services.context import Fleet
from controller.services.models import ensure_model
from tests.conftest import Cli, Result
from tests.faults.conftest import (
    MIB,
    Tmpfs,
    check_invariants,
    deploy,
    on_disk,
    store_dir,
    variant_sha,
    wait_for,
)
from tests.rollout_helpers import run_single


@pytest.mark.parametrize("streams", [1, 4])
def test_disk_filling_mid_upload_fails_with_the_free_space_and_activates_nothing(
        cli: Cli, lab: Callable[..., Result], home: Path, streams: int,
        store_on_tmpfs: Callable[[int, str], Tmpfs],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_PARALLEL_MIN_BYTES", str(8 * MIB))  # q8_0 goes multi-channel
    lab("--devices", "1", "--netns", "--profiles", "lab-orin-nano-8gb")
    disk = store_on_tmpfs(160, "lab-1")
    first = deploy(cli, "tiny-llama", "--group", "lab", "--prefer", "speed")
    assert first.code == 0, first.err
    old, _ = variant_sha("q2_k")
    new, size = variant_sha("q8_0")
    part = store_dir(home) / "incoming" / f"{new}.part"
    filled = threading.Event()

    def fill_when_uploading() -> None:  # something else on the device takes the space
        try:
            wait_for(lambda: on_disk(part) >= 8 * MIB, "the upload")
        except AssertionError:
            return
        disk.fill()
        filled.set()

    filler = threading.Thread(target=fill_when_uploading)
    filler.start()
    try:
        full = deploy(cli, "tiny-llama", "--group", "lab", "--streams", str(streams),
                      "--bwlimit", "8")
    finally:
        filler.join()
    assert filled.is_set()
    assert full.code == 1
    outcome = full.outcomes["lab-1"]
    reason = str(outcome["reason"])
    assert outcome["status"] == "failed" and not outcome["model_failed"]
    assert "disk is full" in reason and "MiB free" in reason, reason
    assert "corrupt" not in reason
    assert 8 * MIB <= int(outcome["bytes_sent"]) < size
    # nothing activated, the partial upload given back, the old model serving
    check_invariants({"lab-1": {old}})
    assert not part.exists() and not part.with_suffix(".ranges").exists()
    assert new not in {p.name for p in (store_dir(home) / "blobs").iterdir()}
    (disk.mountpoint / "filler.bin").unlink()
    again = deploy(cli, "tiny-llama", "--group", "lab", "--streams", str(streams))
    assert again.code == 0, again.err
    check_invariants({"lab-1": {new}})


def test_preflight_counts_a_sparse_partial_upload_by_its_blocks(
        lab: Callable[..., Result], home: Path,
        store_on_tmpfs: Callable[[int, str], Tmpfs]) -> None:
    lab("--devices", "1", "--netns", "--profiles", "lab-n100-16gb")
    store_on_tmpfs(120, "lab-1")
    fleet = Fleet.open()
    model = ensure_model(fleet, "tiny-llama")
    device = fleet.inventory.get_device("lab-1")
    # a plan made without the disk's numbers picks f16 (73 MiB)
    choice = choose(model, fleet.profiles["lab-n100-16gb"], Request(ctx=512), "lab-1")
    assert choice.chosen is not None and choice.chosen.variant.name == "f16"
    art = fleet.artifacts.verify(model, choice.chosen.variant)
    # an interrupted multi-channel upload of it: preallocated to full size, 4 MiB written
    incoming = store_dir(home) / "incoming"
    part = incoming / f"{art.sha256}.part"
    with part.open("wb") as fh:
        fh.truncate(art.size_bytes)
        fh.write(b"x" * 4 * MIB)
    (incoming / f"{art.sha256}.ranges").write_text("{}")
    outcome = run_single(fleet, device.name, choice, art)
    # 69 MiB still to come + the 64 MiB margin > 116 MiB free; its apparent 73 MiB would
    # have said "nearly all there"
    assert outcome.status == "failed" and outcome.bytes_sent == 0
    assert outcome.reason.startswith("preflight refused before sending anything: disk: "
                                     "needs 132.9 MiB, 116.0 MiB free"), outcome.reason
    check_invariants({"lab-1": {""}})
