"""Hostile input where devices enter the fleet (`device add`, ssh_config aliases, Ansible
imports with ranges, records that reach enrollment) against real sshd: refused with one line
and nothing registered; and whatever enrollment writes on a device is quoted, so a path
holding ``$(...)`` starts the agent and runs nothing."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from controller.core.launch_scripts import AgentLaunch, systemd_quote
from controller.services.context import Fleet
from tests.conftest import Cli, Result


def _nothing_registered(cli: Cli) -> None:
    assert json.loads(cli("device", "list", "--json").out)["devices"] == []


@pytest.mark.parametrize("args", [
    ("kiosk-1", "--host", "$(touch /tmp/edgefleet-pwned)"),
    ("kiosk-1", "--host", "10.0.0.5;reboot"),
    ("kiosk-1", "--host", "kiosk.example.com\nExecStart=/bin/sh"),
    ("$(touch /tmp/edgefleet-pwned)", "--host", "10.0.0.5"),
    ("kiosk 1", "--host", "10.0.0.5"),
])
def test_device_add_refuses_hostile_names_and_hosts(cli: Cli, args: tuple[str, ...]) -> None:
    result = cli("device", "add", *args)
    assert result.code == 2 and result.err.startswith("error: ") and "hint:" in result.err
    assert "Traceback" not in result.err
    _nothing_registered(cli)


def test_an_ssh_config_alias_is_checked_for_what_it_stands_for(
        cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host kiosk-evil\n  HostName $(touch /tmp/edgefleet-pwned)\n"
                      "Host kiosk-good\n  HostName 10.0.0.7\n")
    monkeypatch.setenv("FLEET_SSH_CONFIG", str(config))
    refused = cli("device", "add", "k1", "--host", "kiosk-evil")
    assert refused.code == 2 and "ssh_config alias" in refused.err
    _nothing_registered(cli)
    assert cli("device", "add", "k2", "--host", "kiosk-good").code == 0


@pytest.mark.parametrize("inventory", [
    "[kiosks]\nkiosk-[1:2]$(touch /tmp/edgefleet-pwned)\n",
    "[kiosks]\nkiosk-[1:2] ansible_host='$(touch /tmp/edgefleet-pwned)'\n",
    "[kiosks]\nkiosk-1 ansible_host=10.0.0.[1:2]\n",
])
def test_an_inventory_with_hostile_hosts_imports_nothing(cli: Cli, tmp_path: Path,
                                                         inventory: str) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(inventory)
    result = cli("device", "import", str(path), "--builtin")
    assert result.code == 2 and "hosts.ini" in result.err, result.err
    _nothing_registered(cli)


def test_import_replace_keeps_what_enrollment_established(
        cli: Cli, lab: Callable[..., Result], tmp_path: Path) -> None:
    lab("--devices", "1", "--profiles", "lab-n100-16gb")
    before = Fleet.open().inventory.get_device("lab-1")
    assert before.tls and before.data_dir
    path = tmp_path / "hosts.ini"
    path.write_text(f"[kiosks]\nlab-1 ansible_host={before.host} ansible_port="
                    f"{before.ssh_port} edgefleet_agent_port={before.agent_port} site=berlin\n")
    assert cli("device", "import", str(path), "--builtin", "--replace").code == 0
    after = Fleet.open().inventory.get_device("lab-1")
    assert (after.tls, after.data_dir) == (before.tls, before.data_dir)
    assert after.labels == {"site": "berlin"}
    status = cli("status", "--json")
    assert status.code == 0, status.err
    assert json.loads(status.out)["devices"][0]["online"]  # still over mutual TLS


def test_enrollment_refuses_a_hostile_record_and_quotes_every_path(
        cli: Cli, lab: Callable[..., Result], home: Path, tmp_path: Path) -> None:
    lab("--devices", "1", "--profiles", "lab-pi5-8gb", "--sshd-only")
    fleet = Fleet.open()
    device = fleet.inventory.get_device("lab-1")
    marker = tmp_path / "pwned"
    engine = fleet.inventory.engine
    with engine.begin() as c:  # a record written before these checks existed
        c.execute(sa.text("UPDATE device SET host = :h WHERE name = 'lab-1'"),
                  {"h": f"{device.host}$(touch {marker})"})
    refused = cli("device", "enroll", "lab-1")
    assert refused.code == 2 and "neither an IP address nor a host name" in refused.err
    hostile = home / "lab" / "devices" / f"kiosk $(touch {marker}) `id`"
    with engine.begin() as c:
        c.execute(sa.text("UPDATE device SET host = :h, data_dir = :d WHERE name = 'lab-1'"),
                  {"h": device.host, "d": f"{hostile}/data"})
    refused = cli("device", "enroll", "lab-1")
    assert refused.code == 2 and "pip's launchers" in refused.err
    assert not marker.exists() and not Path(hostile).exists()  # refused before any write
    # what a directory may hold is still quoted wherever it is written
    base = home / "lab" / "devices" / "it's 50% done"
    with engine.begin() as c:
        c.execute(sa.text("UPDATE device SET data_dir = :d WHERE name = 'lab-1'"),
                  {"d": f"{base}/data"})
    try:
        enrolled = cli("device", "enroll", "lab-1", "--timeout", "180")
        assert enrolled.code == 0, enrolled.err
        assert not marker.exists()
        script = (base / "run-agent.sh").read_text()
        words = shlex.split(script.splitlines()[-1])
        assert words[1] == f"{base}/venv/bin/fleet-agent" and f"{base}/tls" in words
        assert stat_mode(base / "tls" / "agent.key") == 0o600
        constraints = (base / "wheels" / "constraints.txt").read_text()
        assert "grpcio==" in constraints and "llama-cpp-python" not in constraints
        status = cli("status", "--json")
        assert status.code == 0, status.err
        assert json.loads(status.out)["devices"][0]["online"]
    finally:
        pid_file = base / "agent.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text())
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            subprocess.run(["sh", "-c", f"for i in $(seq 100); do kill -0 {pid} 2>/dev/null "
                            "|| exit 0; sleep 0.1; done"], check=False)


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_launch_files_quote_every_value_for_their_language(tmp_path: Path) -> None:
    base = "/home/pi/it's 50% done"
    launch = AgentLaunch(base, "0.0.0.0:50051", "lab-pi5-8gb")
    # sh: run the script's command through a real shell, printing its words
    command = launch.run_script().splitlines()[-1].removeprefix("exec ").split(" >> ")[0]
    echoed = subprocess.run(["sh", "-c", f"printf '%s\\n' {command}"], capture_output=True,
                            text=True, check=True).stdout.splitlines()
    assert echoed[0] == f"{base}/venv/bin/fleet-agent" and f"{base}/data" in echoed
    # cron turns an unescaped % into a newline; then sh reads the rest
    line = launch.crontab_line().removeprefix("@reboot ")
    assert "%" not in line.replace("\\%", "")
    ran = subprocess.run(["sh", "-c", f"printf '%s\\n' {line.replace(chr(92) + '%', '%')}"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert ran == f"{base}/run-agent.sh"
    unit = launch.systemd_unit()
    assert 'ExecStart="/home/pi/it\'s 50%% done/run-agent.sh"' in unit
    assert systemd_quote('a$b%c"d\\e') == '"a$$b%%c\\"d\\\\e"'
    with pytest.raises(Exception, match="control character"):
        AgentLaunch("/home/pi\nExecStartPre=/bin/sh", "0.0.0.0:1").run_script()
    for hostile in ("/home/$(reboot)", "/home/`id`", 'relative/dir', '/home/"x"'):
        with pytest.raises(Exception, match="pip's launchers"):
            AgentLaunch(hostile)
