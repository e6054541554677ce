"""Enrollment over real SSH onto a bare lab device: venv, wheel, certificates, service;
re-running is safe; rescue restarts a wedged agent and shows its log."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from controller.lab import read_registry
from controller.services.context import Fleet
from tests.conftest import Cli, Result


def _pid(home: Path) -> int:
    return int((home / "lab" / "devices" / "lab-1" / "agent.pid").read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_enroll_deploy_reenroll_rescue(cli: Cli, lab: Callable[..., Result], home: Path) -> None:
    lab("--devices", "1", "--profiles", "lab-pi5-8gb", "--sshd-only")
    before = cli("deploy", "tiny-llama", "--group", "lab")
    assert before.code == 4 and "not reachable" in before.err  # nothing runs there yet

    result = cli("device", "enroll", "lab-1", "--timeout", "180")
    assert result.code == 0, result.err
    assert "mutual TLS on" in result.out
    base = home / "lab" / "devices" / "lab-1"
    assert (base / "venv" / "bin" / "fleet-agent").exists()
    assert oct((base / "tls" / "agent.key").stat().st_mode & 0o777) == "0o600"
    device = Fleet.open().inventory.get_device("lab-1")
    assert device.tls and device.state == "online"
    first = _pid(home)

    deployed = cli("deploy", "tiny-llama", "--group", "lab", "--json")
    assert deployed.code == 0, deployed.err
    assert json.loads(deployed.out)["outcomes"][0]["variant"] == "q4_k_m"

    # an agent that cannot start: enrollment says why as soon as it exits, not at --timeout
    os.kill(first, signal.SIGKILL)
    port = read_registry(home / "lab")[0].agent_port
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(200):  # bounded: free once the killed agent's last thread is gone
            try:
                squatter.bind((device.host, port))
                break
            except OSError:
                time.sleep(0.05)
        squatter.listen()
        stuck = cli("device", "enroll", "lab-1", "--timeout", "120")
    assert stuck.code != 0
    assert f"lab-1: the agent exited: error: Failed to bind to address {device.host}:{port}" \
        in stuck.err, stuck.err
    assert "fleet device rescue lab-1" in stuck.err

    again = cli("device", "enroll", "lab-1")  # idempotent: upgrade in place, restart
    assert again.code == 0, again.err
    second = _pid(home)
    assert second != first and not _alive(first) and _alive(second)
    gen = cli("generate", "hi", "--group", "lab", "--max-tokens", "3", "--json")
    assert gen.code == 0 and json.loads(gen.out)["results"][0]["completion_tokens"] > 0  # restored

    rescued = cli("device", "rescue", "lab-1")
    assert rescued.code == 0, rescued.err
    assert "restarted via pidfile; agent answering" in rescued.out
    assert "restored model tiny-llama (q4_k_m)" in rescued.out  # the log tail
    third = _pid(home)
    assert third != second and _alive(third)

    assert cli("lab", "down").code == 0
    assert not _alive(third)
