"""Preflight: a device that cannot hold the variant is refused before a byte is sent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from controller.core.select import Request, choose
from controller.services.context import Fleet
from controller.services.models import ensure_model
from tests.conftest import Cli, Result
from tests.rollout_helpers import run_single

SMALL_DISK = """
name = "lab-small-disk"
title = "lab device with a 100 MB disk"
kind = "lab-scale-model"
scale_of = "rpi4-2gb"
sources = ["test"]
[cpu]
arch = "aarch64"
cores = 4
[memory]
ram_mib = 1024
reserve_mib = 64
bandwidth_gbps = 12.8
[storage]
disk_gb = 0.1
"""


@pytest.fixture
def small_disk_lab(lab: Callable[..., Result], tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "lab-small-disk.toml").write_text(SMALL_DISK)
    monkeypatch.setenv("FLEET_PROFILES_DIR", str(profiles))
    lab("--devices", "1", "--profiles", "lab-small-disk")


def test_plan_keeps_variants_off_a_small_disk(cli: Cli, small_disk_lab: None) -> None:
    plan = cli("plan", "tiny-llama", "--group", "lab")
    assert "q4_k_m: highest quality that fits" in plan.out  # f16 and q8_0 would not
    assert "free disk (the current model is kept for rollback)" in plan.out
    assert cli("deploy", "tiny-llama", "--group", "lab").code == 0


def test_preflight_refuses_before_sending(small_disk_lab: None) -> None:
    fleet = Fleet.open()
    device = fleet.inventory.get_device("lab-1")
    model = ensure_model(fleet, "tiny-llama")
    # A plan made against stale numbers (a big disk): the device's preflight must stop it.
    profile = replace(fleet.profiles["lab-small-disk"], disk_bytes=0)
    choice = choose(model, profile, Request(ctx=512), "lab-1")
    assert choice.chosen is not None and choice.chosen.variant.name == "f16"
    outcome = run_single(fleet, "lab-1", choice,
                         fleet.artifacts.verify(model, choice.chosen.variant))
    assert outcome.status == "failed" and outcome.bytes_sent == 0
    assert outcome.reason.startswith("preflight refused before sending anything: disk: needs")
    with fleet.client(device) as client:
        store = client.get_store()
        assert list(store.blobs) == [] and store.active_sha256 == ""
    assert list(Path(store.incoming_dir).iterdir()) == []
