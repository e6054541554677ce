"""Faults injected for real into a real lab (sshd and agents, devices in their own network
namespaces): kill -9, a device store on a small tmpfs filled up, iptables packet loss, link
cuts, bytes flipped on a device's disk, broken model files. After each fault, the invariants
(``check_invariants``):

- every device serves either the new model or its previous one;
- no unverified byte is ever activated: the active blob hashes to its name and is loaded;
- the database (device rows), the rollout log (``deployment``) and the devices (GetStore)
  agree;

and each test checks that the message names the real cause. Tests that create namespaces,
iptables rules or mounts hold /tmp/edgefleet-netns.lock (other helpers' runs use the same
198.18.x.x addresses), and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.contract import sha256_file
from agent.rpc import agent_pb2 as pb
from controller.adapters.rollout_repo import SqlRolloutLog
from controller.lab import LabDevice, _stop_agent, read_registry
from controller.services.context import Fleet
from controller.services.lab_fleet import lab_restart
from controller.services.models import ensure_model
from tests.conftest import Cli

MIB = 1024 * 1024

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces, iptables and mounts "
                                "need root (CI runs as root)")


@pytest.fixture(autouse=True)
def _serialised(netns_lock: None) -> None:
    """Every fault test holds the netns lock (tests/conftest.py) from before its lab starts
    until after it is down."""


@dataclass
class Deploy:
    code: int
    out: str
    err: str
    outcomes: dict[str, dict[str, object]]


def deploy(cli: Cli, *args: str) -> Deploy:
    result = cli("deploy", *args, "--json")
    try:
        outcomes = {o["device"]: o for o in json.loads(result.out)["outcomes"]}
    except (ValueError, KeyError):
        outcomes = {}
    return Deploy(result.code, result.out, result.err, outcomes)


def variant_sha(variant: str, model: str = "tiny-llama") -> tuple[str, int]:
    fleet = Fleet.open()
    spec = ensure_model(fleet, model)
    v = spec.variant(variant)
    assert v is not None
    art = fleet.artifacts.local(spec, v)
    assert art is not None
    return art.sha256, art.size_bytes


def lab_device(home: Path, name: str = "lab-1") -> LabDevice:
    return next(d for d in read_registry(home / "lab") if d.name == name)


def store_dir(home: Path, name: str = "lab-1") -> Path:
    return Path(lab_device(home, name).data_dir) / "store"


def get_store(name: str = "lab-1") -> pb.GetStoreResponse:
    fleet = Fleet.open()
    with fleet.client(fleet.inventory.get_device(name)) as client:
        return client.get_store()


def flip(path: Path, offset: int) -> None:
    """Change one byte of a file in place, as a failing disk or a stray write would."""
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x5A]))


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def on_disk(path: Path) -> int:
    """Bytes a file really holds (a preallocated multi-channel upload is sparse)."""
    try:
        return path.stat().st_blocks * 512
    except FileNotFoundError:
        return 0


def check_invariants(allowed: dict[str, set[str]], agree: bool = True) -> dict[str,
                                                                               pb.GetStoreResponse]:
    """The invariants of this suite for each device in ``allowed`` (device -> the sha256 it
    may serve: the new model's or its previous one's; "" for none). With ``agree``, the
    database and the rollout log must also match what the device runs."""
    fleet = Fleet.open()
    stores = {}
    for name, shas in allowed.items():
        device = fleet.inventory.get_device(name)
        with fleet.client(device) as client:
            store = client.get_store()
            models = client.list_models()
        stores[name] = store
        active = store.active_sha256
        assert active in shas, f"{name} serves {active[:12]}, expected one of " \
            f"{[s[:12] for s in shas]}"
        if active:
            blob = Path(store.incoming_dir).parent / "blobs" / active
            assert sha256_file(blob) == active, f"{name} activated unverified bytes"
            [running] = [m for m in models if m.active]
            assert running.state == "loaded" and running.sha256 == active
            assert active in store.blobs
        if not agree or store.active_on_trial:
            continue
        assert device.sha256 == active, (f"{name}: database says {device.sha256[:12]}, the "
                                         f"device runs {active[:12]}")
        rows = [r for r in SqlRolloutLog(fleet.inventory).devices_of(name)
                if r.step in ("committed", "rolled-back")]
        if rows:
            last = rows[0]  # the newest that changed what the device runs
            if last.step == "committed":
                assert last.sha256 == active, f"{name}: rollout log {last.step} {last.sha256}"
            else:
                assert last.sha256 != active
    return stores


@dataclass
class Tmpfs:
    mountpoint: Path

    def fill(self, leave_bytes: int = 0) -> Path:
        """Write a filler file until the file system has ``leave_bytes`` left (or none)."""
        filler = self.mountpoint / "filler.bin"
        block = b"\0" * MIB
        with filler.open("ab") as fh:
            try:
                while os.statvfs(self.mountpoint).f_bavail * os.statvfs(
                        self.mountpoint).f_frsize > leave_bytes + MIB:
                    fh.write(block)
                    fh.flush()
            except OSError:
                pass
        return filler


@pytest.fixture
def store_on_tmpfs(home: Path) -> Iterator[Callable[[int, str], Tmpfs]]:
    """Put a lab device's store on a tmpfs of ``size_mib``. Its agent and sshd are restarted
    onto it: `ip netns exec` gives each its own copy of the mount table, so only processes
    started after the mount see it."""
    mounted: list[Path] = []

    def mount(size_mib: int, name: str = "lab-1") -> Tmpfs:
        fleet = Fleet.open()
        device = lab_device(home, name)
        _stop_agent(device)
        os.killpg(device.sshd_pid, signal.SIGTERM)
        wait_for(lambda: not Path(f"/proc/{device.sshd_pid}").exists()
                 or _zombie(device.sshd_pid), "sshd to stop")
        with contextlib.suppress(ChildProcessError):
            os.waitpid(device.sshd_pid, os.WNOHANG)
        target = Path(device.data_dir) / "store"
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs",
                        str(target)], check=True)
        mounted.append(target)
        lab_restart(fleet, [name])
        return Tmpfs(target)

    yield mount
    for target in mounted:  # lazily: the lab's own teardown stops the agent afterwards
        subprocess.run(["umount", "-l", str(target)], check=False)
