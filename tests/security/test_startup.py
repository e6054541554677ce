"""Agents fail closed at start: a TLS directory without a signing key, a key that does not
match its certificate, or a listener other machines can reach without TLS (unless
--insecure, said loudly) stop the agent before it listens."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.adapters.pki import FleetPki
from controller.lab import read_registry
from tests.conftest import Cli, Result


def _serve(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `fleet-agent serve` that must refuse: it exits instead of serving."""
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "serve", "--data-dir", str(tmp / "data"),
         "--port-file", str(tmp / "port"), *args],
        capture_output=True, text=True, timeout=60)


def _tls_dir(tmp: Path, without: tuple[str, ...] = ()) -> Path:
    pki = FleetPki(tmp / "pki").ensure()
    tls = tmp / "tls"
    tls.mkdir()
    for name, data in pki.agent_files("dev-1", "127.0.0.1").items():
        if name not in without:
            (tls / name).write_bytes(data)
    return tls


def test_tls_without_a_signing_key_refuses_to_start(tmp_path: Path) -> None:
    tls = _tls_dir(tmp_path, without=("signing.pub",))
    ran = _serve(tmp_path, "--listen", "127.0.0.1:0", "--tls-dir", str(tls))
    assert ran.returncode == 2
    assert "no manifest-signing key" in ran.stderr and "hint:" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert not (tmp_path / "port").exists()  # never listened


def test_a_key_that_is_not_the_certificates_refuses_to_start(tmp_path: Path) -> None:
    tls = _tls_dir(tmp_path)
    other = FleetPki(tmp_path / "other").ensure().issue("dev-1")
    (tls / "agent.key").write_bytes(other.key_pem)
    ran = _serve(tmp_path, "--listen", "127.0.0.1:0", "--tls-dir", str(tls))
    assert ran.returncode == 2 and "unusable" in ran.stderr
    assert "does not belong to agent.crt" in ran.stderr
    assert not (tmp_path / "port").exists()


def test_a_reachable_listener_without_tls_refuses_unless_insecure(tmp_path: Path) -> None:
    ran = _serve(tmp_path, "--listen", "0.0.0.0:0")
    assert ran.returncode == 2
    assert "reachable from other machines" in ran.stderr and "--insecure" in ran.stderr
    assert not (tmp_path / "port").exists()


@pytest.fixture
def insecure_netns_lab(netns_lock: None, lab: Callable[..., Result]) -> Iterator[None]:
    lab("--devices", "1", "--profiles", "lab-n100-16gb", "--netns", "--insecure")
    yield


def test_lab_insecure_in_a_namespace_serves_with_a_loud_warning(
        insecure_netns_lab: None, cli: Cli, home: Path) -> None:
    (device,) = read_registry(home / "lab")
    assert not device.address.startswith("127.")  # reachable from the host, not loopback
    log = Path(device.directory, "agent.log").read_text()
    assert "INSECURE: serving model management on" in log and "--insecure" in log
    status = cli("status", "--json")
    assert status.code == 0, status.err
    assert json.loads(status.out)["devices"][0]["online"]
