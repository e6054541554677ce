"""Transfers over a real sshd: resume after the connection is cut, nothing re-sent when the
device already holds the blob."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agent.contract import sha256_file
from controller.artifacts import LocalArtifact
from controller.lab import child_pids, read_registry
from controller.services.context import Fleet
from controller.services.deploying import DeployOptions
from controller.services.uploading import send
from tests.conftest import Cli, Result

MIB = 1024 * 1024


CUT = threading.Event()


def _cut_when(part: Path, threshold: int, sshd_pid: int, done: threading.Event) -> None:
    """Kill the sshd session serving the upload once ``part`` passes ``threshold`` bytes."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not done.is_set():
        if part.exists() and part.stat().st_size >= threshold:
            for child in child_pids(sshd_pid):
                os.kill(child, signal.SIGKILL)
            CUT.set()
            return
        time.sleep(0.01)


def test_upload_resumes_after_the_connection_is_cut(cli: Cli, lab: Callable[..., Result],
                                                    home: Path, tmp_path: Path) -> None:
    lab("--devices", "1")
    CUT.clear()
    fleet = Fleet.open()
    device = fleet.inventory.get_device("lab-1")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(48 * MIB))
    art = LocalArtifact(blob, sha256_file(blob), blob.stat().st_size)
    sshd_pid = read_registry(home / "lab")[0].sshd_pid
    with fleet.client(device) as client:
        store = client.get_store()
        part = Path(store.incoming_dir) / f"{art.sha256}.part"
        done = threading.Event()
        cutter = threading.Thread(target=_cut_when, args=(part, 24 * MIB, sshd_pid, done))
        cutter.start()
        first = client.check_fit(art.sha256, art.size_bytes, 0)
        options = DeployOptions(retries=3, backoff_s=0.1, limit_bytes_per_s=24 * MIB)
        try:
            sent = send(fleet, client, device, art, first, store.incoming_dir, 0, options)
        finally:
            done.set()
            cutter.join()
        assert CUT.is_set()  # the connection really was cut mid-transfer
        landed = Path(store.incoming_dir) / art.sha256
        assert landed.exists() and sha256_file(landed) == art.sha256
        assert not part.exists()
        # resumed, not restarted: at most the file plus what was in flight at the cut
        assert art.size_bytes <= sent < art.size_bytes * 1.15, sent
        again = client.check_fit(art.sha256, art.size_bytes, 0)
        assert again.staged_bytes == 0


def test_a_corrupt_partial_upload_is_restarted_not_resumed(cli: Cli, lab: Callable[..., Result],
                                                          tmp_path: Path) -> None:
    lab("--devices", "1")
    fleet = Fleet.open()
    device = fleet.inventory.get_device("lab-1")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(4 * MIB))
    art = LocalArtifact(blob, sha256_file(blob), blob.stat().st_size)
    with fleet.client(device) as client:
        store = client.get_store()
        part = Path(store.incoming_dir) / f"{art.sha256}.part"
        part.write_bytes(b"\0" * MIB)  # not a prefix of our file
        fit = client.check_fit(art.sha256, art.size_bytes, 0)
        assert fit.staged_bytes == MIB
        sent = send(fleet, client, device, art, fit, store.incoming_dir, 0, DeployOptions())
    assert sent == art.size_bytes
    assert sha256_file(Path(store.incoming_dir) / art.sha256) == art.sha256


def test_multi_stream_upload_resumes_each_range(cli: Cli, lab: Callable[..., Result],
                                                home: Path, tmp_path: Path) -> None:
    lab("--devices", "1")
    fleet = Fleet.open()
    device = fleet.inventory.get_device("lab-1")
    blob = tmp_path / "big.bin"
    blob.write_bytes(os.urandom(96 * MIB))  # >= 64 MiB: four SFTP channels
    art = LocalArtifact(blob, sha256_file(blob), blob.stat().st_size)
    sshd_pid = read_registry(home / "lab")[0].sshd_pid
    with fleet.client(device) as client:
        store = client.get_store()
        ranges = Path(store.incoming_dir) / f"{art.sha256}.ranges"
        done = threading.Event()

        def cut_when_half_done() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not done.is_set():
                try:
                    import json

                    state = json.loads(ranges.read_text())
                except (OSError, ValueError):
                    time.sleep(0.01)
                    continue
                if sum(o - r[0] for o, r in zip(state["offsets"], state["ranges"],
                                                strict=True)) >= 48 * MIB:
                    for child in child_pids(sshd_pid):
                        os.kill(child, signal.SIGKILL)
                    CUT.set()
                    return
                time.sleep(0.01)

        CUT.clear()
        cutter = threading.Thread(target=cut_when_half_done)
        cutter.start()
        first = client.check_fit(art.sha256, art.size_bytes, 0)
        options = DeployOptions(retries=3, backoff_s=0.1, limit_bytes_per_s=48 * MIB)
        try:
            sent = send(fleet, client, device, art, first, store.incoming_dir, 0, options)
        finally:
            done.set()
            cutter.join()
    assert CUT.is_set()  # the connection really was cut with every range half done
    landed = Path(store.incoming_dir) / art.sha256
    assert sha256_file(landed) == art.sha256
    assert not ranges.exists()
    assert art.size_bytes <= sent < art.size_bytes * 1.25, sent  # each range resumed
