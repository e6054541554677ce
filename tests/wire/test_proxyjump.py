"""A device reachable through a bastion: ~/.ssh/config's HostName, User and ProxyJump are
honoured for SSH and for the agent's gRPC (tunnelled), with no extra flags."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.lab import read_registry
from tests.conftest import Cli, Result


def test_deploy_through_a_jump_host(cli: Cli, lab: Callable[..., Result], home: Path,
                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_LAB_SSHD_LOGLEVEL", "DEBUG1")
    # Routing is under test here, not certificates: the lab's agents run without mTLS (an
    # enrolled "kiosk" would carry a certificate issued to its own name).
    lab("--devices", "2", "--profiles", "lab-n100-16gb", "--insecure")
    bastion, target = read_registry(home / "lab")
    key = home / "lab" / "id_ed25519"
    config = tmp_path / "ssh_config"
    config.write_text(f"""
Host bastion
  HostName {bastion.address}
  Port {bastion.ssh_port}
  IdentityFile {key}

Host kiosk-behind-bastion
  HostName {target.address}
  Port {target.ssh_port}
  IdentityFile {key}
  ProxyJump bastion
""")
    monkeypatch.setenv("FLEET_SSH_CONFIG", str(config))
    # Only the alias and the agent port: address, port, key and route come from the config.
    assert cli("device", "add", "kiosk", "--host", "kiosk-behind-bastion", "--group", "far",
               "--agent-port", str(target.agent_port)).code == 0
    result = cli("deploy", "tiny-llama", "--group", "far", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["outcomes"][0]["status"] == "committed"
    gen = cli("generate", "hi", "--device", "kiosk", "--max-tokens", "3", "--json")
    assert gen.code == 0 and json.loads(gen.out)["results"][0]["completion_tokens"] > 0
    log = Path(bastion.directory, "sshd.log").read_text()
    # the bastion carried both the SFTP session and the agent's gRPC to the target
    assert f"target {target.address} port {target.ssh_port}" in log
    assert f"target {target.address} port {target.agent_port}" in log
