"""Ansible inventories (INI and YAML) into devices; errors name file and line; all or
nothing."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Cli

DATA = Path(__file__).resolve().parents[1] / "data" / "inventory"


def test_ini_inventory(cli: Cli) -> None:
    result = cli("device", "import", str(DATA / "hosts.ini"))
    assert result.code == 0, result.err
    assert "imported 5 devices into 2 groups: kiosks, robots" in result.out
    devices = {d["name"]: d for d in json.loads(cli("device", "list", "--json").out)}
    assert sorted(devices) == ["kiosk-01", "kiosk-02", "kiosk-03", "kiosk-big", "robot-a"]
    k1 = devices["kiosk-01"]
    assert (k1["host"], k1["user"], k1["ssh_port"], k1["profile"]) == (
        "kiosk-01", "pi", 22, "rpi5-8gb")
    assert k1["key_path"] == "~/.ssh/fleet_ed25519"
    assert k1["labels"] == {"site": "berlin", "owner": "platform"}  # group and parent vars
    big = devices["kiosk-big"]
    assert (big["host"], big["ssh_port"], big["profile"]) == ("192.0.2.40", 2222, "rpi5-16gb")
    robot = devices["robot-a"]
    assert robot["proxy_jump"] == "ops@bastion.lan:2200" and robot["agent_port"] == 50052
    assert robot["group_name"] == "robots" and robot["labels"] == {"owner": "platform"}
    selected = cli("plan", "tiny-llama", "--label", "site=berlin", "--json")
    assert {p["device"] for p in json.loads(selected.out)} == {
        "kiosk-01", "kiosk-02", "kiosk-03", "kiosk-big"}


def test_yaml_inventory(cli: Cli) -> None:
    result = cli("device", "import", str(DATA / "hosts.yml"))
    assert result.code == 0, result.err
    devices = {d["name"]: d for d in json.loads(cli("device", "list", "--json").out)}
    assert devices["orin-1"]["profile"] == "jetson-orin-nano-8gb-super"
    assert devices["orin-1"]["labels"] == {"owner": "platform", "site": "munich"}
    assert devices["orin-2"]["user"] == "nvidia" and devices["orin-2"]["group_name"] == "jetsons"


def test_errors_name_file_and_line_and_import_nothing(cli: Cli) -> None:
    bad_ini = cli("device", "import", str(DATA / "broken.ini"))
    assert bad_ini.code == 2
    assert bad_ini.err.startswith(f"error: {DATA / 'broken.ini'}:3: expected key=value")
    bad_yaml = cli("device", "import", str(DATA / "broken.yml"))
    assert bad_yaml.code == 2
    assert f"{DATA / 'broken.yml'}:7: unsupported key 'plugin'" in bad_yaml.err
    assert json.loads(cli("device", "list", "--json").out) == []


def test_conflicts_import_nothing_unless_replace(cli: Cli) -> None:
    assert cli("device", "add", "kiosk-02", "--host", "x", "--group", "old").code == 0
    clash = cli("device", "import", str(DATA / "hosts.ini"))
    assert clash.code == 2 and "already exist: kiosk-02" in clash.err
    assert [d["name"] for d in json.loads(cli("device", "list", "--json").out)] == ["kiosk-02"]
    assert cli("device", "import", str(DATA / "hosts.ini"), "--replace").code == 0
    assert len(json.loads(cli("device", "list", "--json").out)) == 5
