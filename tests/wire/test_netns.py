"""Lab devices in their own network namespaces behind veth links (root only): a deploy over
the link, and an upload that survives the link dropping mid-transfer."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.contract import sha256_file
from controller import lab_netns
from controller.artifacts import LocalArtifact
from controller.lab import read_registry
from controller.services.context import Fleet
from controller.services.deploying import DeployOptions
from controller.services.uploading import send
from tests.conftest import Cli, Result

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root "
                                 "(CI runs as root)"),
              pytest.mark.usefixtures("netns_lock")]
MIB = 1024 * 1024


def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_deploy_over_a_veth_link(cli: Cli, lab: Callable[..., Result], home: Path) -> None:
    lab("--devices", "2", "--netns")
    registry = read_registry(home / "lab")
    assert [d.address for d in registry] == ["198.18.0.2", "198.18.1.2"]
    assert all(d.netns in _namespaces() for d in registry)
    result = cli("deploy", "tiny-llama", "--group", "lab")
    assert result.code == 0, result.err
    assert cli("generate", "hi", "--group", "lab", "--max-tokens", "3").code == 0
    assert cli("lab", "down").code == 0
    assert not any(d.netns in _namespaces() for d in registry)


def test_upload_survives_the_link_dropping(cli: Cli, lab: Callable[..., Result], home: Path,
                                           tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_SSH_STALL_TIMEOUT", "2")
    lab("--devices", "1", "--netns")
    device_lab = read_registry(home / "lab")[0]
    link = device_lab.link
    assert link is not None
    fleet = Fleet.open()
    device = fleet.inventory.get_device("lab-1")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(32 * MIB))
    art = LocalArtifact(blob, sha256_file(blob), blob.stat().st_size)
    dropped = threading.Event()

    def drop_link(part: Path) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if part.exists() and part.stat().st_size >= 12 * MIB:
                lab_netns.set_up(link, False)  # the device's Wi-Fi goes away...
                dropped.set()
                time.sleep(4)
                lab_netns.set_up(link, True)  # ...and comes back
                return
            time.sleep(0.01)

    with fleet.client(device) as client:
        store = client.get_store()
        part = Path(store.incoming_dir) / f"{art.sha256}.part"
        watcher = threading.Thread(target=drop_link, args=(part,))
        watcher.start()
        try:
            first = client.check_fit(art.sha256, art.size_bytes, 0)
            options = DeployOptions(retries=6, backoff_s=0.5, limit_bytes_per_s=8 * MIB)
            sent = send(fleet, client, device, art, first, store.incoming_dir, 0, options)
        finally:
            watcher.join()
    assert dropped.is_set()
    landed = Path(store.incoming_dir) / art.sha256
    assert sha256_file(landed) == art.sha256
    assert sent < art.size_bytes * 1.3, sent  # resumed after the outage, not restarted
