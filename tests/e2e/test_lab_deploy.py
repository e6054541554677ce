"""End to end, from an empty database: lab up, deploy, verify, generate, lab down."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from agent.contract import sha256_file
from controller.lab import read_registry
from controller.services.context import Fleet
from controller.services.models import ensure_model
from tests.conftest import Cli, Result


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _processes_under(path: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline and _alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def test_deploy_end_to_end(cli: Cli, lab: Callable[..., Result], home: Path) -> None:
    lab("--devices", "3")
    registry = read_registry(home / "lab")
    assert [d.profile for d in registry] == ["lab-pi4-2gb", "lab-pi5-8gb", "lab-orin-nano-8gb"]
    # every lab device is a real sshd and a real agent on its own loopback address
    assert len({d.address for d in registry}) == 3
    assert all(_alive(d.sshd_pid) and _alive(d.agent_pid) for d in registry)

    result = cli("deploy", "tiny-llama", "--group", "lab", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    outcomes = {o["device"]: o for o in report["outcomes"]}
    plans = {p["device"]: p for p in report["plans"]}
    assert {o["status"] for o in outcomes.values()} == {"committed"}

    fleet = Fleet.open()
    model = ensure_model(fleet, "tiny-llama")
    sizes = {}
    for name, plan in plans.items():
        chosen = plan["chosen"]
        winner = next(c for c in plan["candidates"] if c["variant"] == chosen)
        assert winner["fits"], plan
        device = fleet.inventory.get_device(name)
        profile = fleet.profiles[device.profile]
        assert winner["memory_bytes"] <= profile.usable_bytes
        sizes[name] = winner["weights_bytes"]
        # the device holds exactly the verified bytes of the chosen variant, and runs them
        variant = model.variant(chosen)
        assert variant is not None
        art = fleet.artifacts.local(model, variant)
        assert art is not None
        with fleet.client(device) as client:
            store = client.get_store()
            assert store.active_sha256 == art.sha256
            assert art.sha256 in store.blobs
            blob = Path(store.incoming_dir).parent / "blobs" / art.sha256
            assert sha256_file(blob) == art.sha256
            models = client.list_models()
            assert [(m.variant, m.state) for m in models if m.active] == [(chosen, "loaded")]
            events = list(client.stream("The edge device", max_tokens=6))
            texts = [e.text for e in events if not e.HasField("summary")]
            summary = events[-1].summary
            assert summary.completion_tokens > 0 and "".join(texts)
            assert summary.ttft_ms > 0
        assert device.state == "deployed" and device.variant == chosen
    # the small-RAM device got a smaller variant than the large one
    assert sizes["lab-1"] < sizes["lab-2"] < sizes["lab-3"]
    assert plans["lab-1"]["chosen"] == "q2_k" and plans["lab-3"]["chosen"] == "q8_0"

    # a second deploy sends nothing and changes nothing
    again = cli("deploy", "tiny-llama", "--group", "lab", "--json")
    assert again.code == 0
    assert {o["status"] for o in json.loads(again.out)["outcomes"]} == {"unchanged"}

    gen = cli("generate", "hello", "--group", "lab", "--max-tokens", "4", "--json")
    assert gen.code == 0, gen.err
    assert all(r["completion_tokens"] > 0 for r in json.loads(gen.out)["results"])

    down = cli("lab", "down")
    assert down.code == 0
    for d in registry:
        assert not _alive(d.sshd_pid) and not _alive(d.agent_pid)
    assert _processes_under(home / "lab") == []
    assert not (home / "lab" / "registry.json").exists()


def test_lab_up_twice_leaves_no_strays(cli: Cli, lab: Callable[..., Result], home: Path) -> None:
    lab("--devices", "2")
    first = read_registry(home / "lab")
    lab("--devices", "2")
    second = read_registry(home / "lab")
    for d in first:
        assert not _alive(d.sshd_pid) and not _alive(d.agent_pid)
    assert all(_alive(d.agent_pid) for d in second)
    listed = json.loads(cli("device", "list", "--json").out)["devices"]
    assert sorted(d["name"] for d in listed) == ["lab-1", "lab-2"]
    cli("lab", "down")
    assert _processes_under(home / "lab") == []


def test_an_agent_that_cannot_start_is_named_with_its_own_error(
        cli: Cli, lab: Callable[..., Result], home: Path) -> None:
    """A lab agent that exits at start says why in the one line, not only "see the log"."""
    lab("--devices", "1")
    device = read_registry(home / "lab")[0]
    os.kill(device.agent_pid, signal.SIGKILL)
    with socket.socket() as squatter:  # its port taken while it is down
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        for _ in range(200):  # bounded: the port is free once the agent's last thread is gone
            try:
                squatter.bind((device.address, device.agent_port))
                break
            except OSError:
                time.sleep(0.05)
        squatter.listen()
        result = cli("lab", "restart", "lab-1")
    assert result.code == 1, result.err
    first = result.err.splitlines()[0]
    assert first.startswith("error: agent for lab-1 exited with 2: error: "), result.err
    assert str(device.agent_port) in first, result.err
    assert cli("lab", "restart", "lab-1").code == 0  # the port free again, it comes back
