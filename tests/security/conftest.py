"""Shared parts of the attack suite: a lab with mutual TLS (real sshd and agents), blobs
staged on a lab device, load orders built the way an attacker would, and a snapshot of what
a device runs so each test can say "nothing changed"."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.contract import sha256_file
from agent.rpc import agent_pb2 as pb
from controller.services.context import Fleet
from tests.conftest import Result


@pytest.fixture
def pair(lab: Callable[..., Result]) -> Fleet:
    """Two lab devices (lab-1, lab-2) with mutual TLS and signing keys, as `lab up` makes."""
    lab("--devices", "2", "--profiles", "lab-n100-16gb")
    return Fleet.open()


def gguf(models: Path, variant: str) -> Path:
    return models / "tiny-llama" / f"tiny-llama-{variant}.gguf"


def stage(fleet: Fleet, device: str, path: Path) -> str:
    """Put ``path`` in the lab device's incoming directory, as an upload would."""
    incoming = Path(fleet.inventory.get_device(device).data_dir) / "store" / "incoming"
    digest = sha256_file(path)
    shutil.copyfile(path, incoming / digest)
    return digest


def fields(path: Path, variant: str, **changes: Any) -> dict[str, Any]:
    """The fields of a load order for ``path``, as the controller signs them."""
    return {"sha256": sha256_file(path), "size_bytes": path.stat().st_size,
            "name": "tiny-llama", "variant": variant, "format": "gguf", "n_ctx": 256,
            "memory_bytes": 0, "trial": False, "trial_seconds": 0, "runtime": {}, **changes}


def request(signed: dict[str, Any], body: bytes, signature: bytes,
            **changes: Any) -> pb.LoadModelRequest:
    """A LoadModel request carrying ``signed`` fields, with ``changes`` made to the request
    only (what a replaying attacker would alter)."""
    sent = {**signed, **changes}
    return pb.LoadModelRequest(
        sha256=sent["sha256"], name=sent["name"], variant=sent["variant"],
        format=sent["format"], n_ctx=sent["n_ctx"], size_bytes=sent["size_bytes"],
        estimated_memory_bytes=sent["memory_bytes"], trial=sent["trial"],
        trial_seconds=sent["trial_seconds"], manifest=body, manifest_signature=signature,
        aliases=sent.get("aliases", []), replace=sent.get("replace", False),
        pinned=sent.get("pinned", False))


@dataclass(frozen=True)
class DeviceState:
    active: str
    previous: str
    on_trial: bool
    manifest_seq: int
    models: tuple[tuple[str, str, int], ...]  # (sha256, state, worker pid)


def device_state(fleet: Fleet, name: str) -> DeviceState:
    """What the device runs and has accepted, as its agent reports it."""
    with fleet.client(fleet.inventory.get_device(name)) as client:
        store = client.get_store()
        models = tuple(sorted((m.sha256, m.state, m.worker_pid) for m in client.list_models()))
    return DeviceState(store.active_sha256, store.previous_sha256, store.active_on_trial,
                       store.manifest_seq, models)
