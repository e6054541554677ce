"""SFTP write size and SSH algorithms against a real sshd: large writes only where the server
says it takes them, and the same bytes land either way."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from agent.contract import sha256_file
from controller.adapters.sftp_limits import MAX_WRITE, SAFE_WRITE, write_size
from controller.adapters.ssh_parallel import push_ranges
from controller.lab import read_registry
from controller.services.context import Fleet
from tests.conftest import Cli, Result

MIB = 1024 * 1024


def _upload_both_ways(fleet: Fleet, blob: Path, data_dir: Path) -> int:
    device = fleet.inventory.get_device("lab-1")
    ssh = fleet.transfer.connect(fleet.ssh_target(device))
    try:
        with ssh.open_sftp() as sftp:
            size = write_size(sftp)
        fleet.transfer.push(ssh, blob, str(data_dir), "one")
        push_ranges(ssh, blob, str(data_dir), "four", 4, 30.0)
    finally:
        ssh.close()
    for name in ("one", "four"):
        assert sha256_file(data_dir / name) == sha256_file(blob)
        assert not (data_dir / f"{name}.part").exists()
        assert not (data_dir / f"{name}.ranges").exists()
    return size


def test_large_writes_where_the_server_announces_them(cli: Cli, lab: Callable[..., Result],
                                                      home: Path, tmp_path: Path) -> None:
    lab("--devices", "1", "--sshd-only")
    fleet = Fleet.open()
    device = read_registry(home / "lab")[0]
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(3 * MIB + 12345))  # not a multiple of any request size
    assert _upload_both_ways(fleet, blob, Path(device.directory) / "data") == MAX_WRITE


def test_small_writes_where_the_server_is_silent(cli: Cli, lab: Callable[..., Result],
                                                 home: Path, tmp_path: Path) -> None:
    lab("--devices", "1", "--sshd-only")
    fleet = Fleet.open()
    device = read_registry(home / "lab")[0]
    config = Path(device.directory) / "sshd_config"
    # the server refuses limits@openssh.com, as an SFTP server without the extension does
    config.write_text(config.read_text().replace(
        "Subsystem sftp internal-sftp", "Subsystem sftp internal-sftp -P limits"))
    os.kill(device.sshd_pid, signal.SIGHUP)  # sshd re-executes itself with the new config
    time.sleep(0.5)
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(MIB + 4321))
    assert _upload_both_ways(fleet, blob, Path(device.directory) / "data") == SAFE_WRITE


def test_connections_use_an_aead_cipher_and_no_legacy_algorithms(
        cli: Cli, lab: Callable[..., Result]) -> None:
    lab("--devices", "1", "--sshd-only")
    fleet = Fleet.open()
    ssh = fleet.transfer.connect(fleet.ssh_target(fleet.inventory.get_device("lab-1")))
    try:
        transport = ssh.get_transport()
        assert transport is not None
        assert transport.local_cipher == "aes128-gcm@openssh.com"
        offered = transport.get_security_options()
        assert not [c for c in offered.ciphers if "cbc" in c]
        assert not [m for m in offered.digests if "sha1" in m or "md5" in m]
    finally:
        ssh.close()
