"""`fleet device import`: devices in every group the inventory puts them in, nested groups
kept, a report of what was mapped, labelled and ignored, --dry-run, --strict, --via-ansible;
bad files give one `file:line` error and import nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from controller.adapters.ansible.via_ansible import find_ansible
from tests.conftest import Cli

DATA = Path(__file__).resolve().parents[1] / "data" / "inventory"
BAD = DATA / "bad"
ORACLE = DATA / "oracle"


def devices(cli: Cli, *args: str) -> dict[str, dict[str, object]]:
    listed = cli("device", "list", "--json", *args)
    assert listed.code == 0, listed.err
    return {d["name"]: d for d in json.loads(listed.out)["devices"]}


def test_ini_inventory(cli: Cli) -> None:
    result = cli("device", "import", "--builtin", str(DATA / "hosts.ini"))
    assert result.code == 0, result.err
    assert "imported 5 devices into 3 groups: kiosks, robots, edge" in result.out
    found = devices(cli)
    assert sorted(found) == ["kiosk-01", "kiosk-02", "kiosk-03", "kiosk-big", "robot-a"]
    k1 = found["kiosk-01"]
    assert (k1["host"], k1["user"], k1["ssh_port"], k1["profile"]) == (
        "kiosk-01", "pi", 22, "rpi5-8gb")
    assert k1["key_path"] == "~/.ssh/fleet_ed25519"
    assert k1["labels"] == {"site": "berlin", "owner": "platform"}  # group and parent vars
    big = found["kiosk-big"]
    assert (big["host"], big["ssh_port"], big["profile"]) == ("192.0.2.40", 2222, "rpi5-16gb")
    robot = found["robot-a"]
    assert robot["proxy_jump"] == "ops@bastion.lan:2200" and robot["agent_port"] == 50052
    assert robot["groups"] == ["robots"] and robot["labels"] == {"owner": "platform"}
    # the parent group selects the devices of the groups nested in it
    assert set(devices(cli, "--group", "edge")) == set(found)
    selected = cli("plan", "tiny-llama", "--group", "edge", "--label", "site=berlin", "--json")
    assert {p["device"] for p in json.loads(selected.out)["plans"]} == {
        "kiosk-01", "kiosk-02", "kiosk-03", "kiosk-big"}


def test_yaml_inventory(cli: Cli) -> None:
    result = cli("device", "import", "--builtin", str(DATA / "hosts.yml"))
    assert result.code == 0, result.err
    found = devices(cli)
    assert found["orin-1"]["profile"] == "jetson-orin-nano-8gb-super"
    assert found["orin-1"]["labels"] == {"owner": "platform", "site": "munich"}
    assert found["orin-2"]["user"] == "nvidia" and found["orin-2"]["groups"] == ["jetsons"]


def test_a_device_in_several_groups_and_nested_selection(cli: Cli) -> None:
    result = cli("device", "import", "--builtin", str(ORACLE / "yaml_diamond" / "hosts.yml"))
    assert result.code == 0, result.err
    found = devices(cli)
    assert found["bk-1"]["groups"] == ["berlin_kiosks", "canary"]
    assert set(devices(cli, "--group", "hw_pi")) == {"bk-1", "spare-pi"}
    assert set(devices(cli, "--group", "site_berlin")) == {"bk-1"}
    assert set(devices(cli, "--group", "all")) == {"bk-1", "spare-pi"}
    tree = {g["name"]: g for g in json.loads(cli("group", "list", "--json").out)["groups"]}
    assert tree["berlin_kiosks"]["parents"] == ["hw_pi", "site_berlin"]
    assert tree["hw_pi"]["all_devices"] == ["bk-1", "spare-pi"]
    listed = cli("device", "list")
    assert "berlin_kiosks,canary" in listed.out
    plan = cli("plan", "tiny-llama", "--group", "site_berlin", "--json")
    assert plan.code == 0, plan.err
    assert [(p["device"], p["groups"]) for p in json.loads(plan.out)["plans"]] == [
        ("bk-1", ["berlin_kiosks", "canary"])]


def test_report_names_what_was_mapped_labelled_ignored_and_skipped(cli: Cli) -> None:
    result = cli("device", "import", "--builtin", "--dry-run",
                 str(ORACLE / "ini_connection" / "hosts.ini"))
    assert result.code == 0, result.err
    out = " ".join(result.out.split())
    assert "skipped: localhost" in out and "ansible_connection=local is not SSH" in out
    assert "skipped: container-1" in out and "skipped: win-1" in out
    assert "dry run: would import 3 devices" in out and "nothing written" in out
    assert devices(cli) == {}
    basic = cli("device", "import", "--builtin", str(ORACLE / "ini_basic" / "hosts.ini"))
    out = " ".join(basic.out.split())
    assert "address <- ansible_host (3)" in out and "user <- ansible_user (2)" in out
    assert "labels: owner, site, tier" in out
    assert ("ignored: ansible_python_interpreter on 3 host(s) (kiosk-01, kiosk-02, robot-a): "
            "not used by edgefleet") in out
    report = json.loads(cli("device", "import", "--builtin", "--dry-run", "--json",
                            str(ORACLE / "ini_old_names" / "hosts.ini")).out)
    b1 = next(h for h in report["hosts"] if h["name"] == "b1")
    assert (b1["address"], b1["port"]) == ("192.0.2.32", 2232)  # the ansible_ssh_* spelling
    assert b1["ignored"]["ansible_host"] == "overridden by ansible_ssh_host"


def test_strict_refuses_any_ignored_variable(cli: Cli) -> None:
    strict = cli("device", "import", "--builtin", "--strict",
                 str(ORACLE / "ini_basic" / "hosts.ini"))
    assert strict.code == 2
    assert "--strict" in strict.err and "ansible_python_interpreter" in strict.err
    assert devices(cli) == {}
    clean = cli("device", "import", "--builtin", "--strict", str(DATA / "hosts.yml"))
    assert clean.code == 0, clean.err


# file -> line of the error. Ansible refuses these files too:
ANSIBLE_REFUSES = {
    "vars_for_undefined_group.ini": 4, "children_undefined.ini": 3,
    "unknown_section_type.ini": 3, "host_var_without_value.ini": 3, "unequal_range.ini": 2,
    "semicolon_after_section.ini": 3, "unclosed_quote.ini": 2, "yaml_syntax.yml": 6,
    "hosts_as_list.yml": 2, "group_loop.yml": 3,
}
# Ansible reads these; edgefleet refuses them on purpose (a device must be an SSH host it can
# name, and a template only Ansible can evaluate is never stored as text)
WE_REFUSE = {
    "shell_in_host_name.ini": 3, "shell_in_address.ini": 2, "jinja_address.ini": 3,
    "jinja_label.ini": 4, "ipv6_as_name.ini": 2, "proxycommand_nc.ini": 2,
    "plugin_config.yml": 1, "port_not_a_number.ini": 2,
}


@pytest.mark.parametrize("name", sorted({**ANSIBLE_REFUSES, **WE_REFUSE}))
def test_bad_files_give_one_file_line_error_and_import_nothing(cli: Cli, name: str) -> None:
    assert cli("device", "add", "keep-me", "--host", "192.0.2.9").code == 0
    result = cli("device", "import", "--builtin", str(BAD / name))
    line = {**ANSIBLE_REFUSES, **WE_REFUSE}[name]
    assert result.code == 2, result.out
    first, *rest = result.err.splitlines()
    assert first.startswith(f"error: {BAD / name}:{line}: "), result.err
    assert rest and rest[0].startswith("hint:") and "Traceback" not in result.err
    assert list(devices(cli)) == ["keep-me"]


def test_ansible_agrees_on_which_bad_files_are_bad(tmp_path: Path) -> None:
    binary = find_ansible()
    if binary is None:
        pytest.skip("ansible-core is not installed (it is in the dev extra)")
    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
           "ANSIBLE_HOME": str(tmp_path)}
    verdicts = {name: subprocess.run([binary, "-i", str(BAD / name), "--list"], env=env,
                                     capture_output=True, cwd=tmp_path, check=False).returncode
                for name in sorted({**ANSIBLE_REFUSES, **WE_REFUSE})}
    assert {n for n, code in verdicts.items() if code != 0} == set(ANSIBLE_REFUSES)


def test_jinja_in_group_vars_names_the_vars_file(cli: Cli) -> None:
    case = BAD / "jinja_in_group_vars"
    result = cli("device", "import", "--builtin", str(case / "hosts.ini"))
    assert result.code == 2
    assert result.err.startswith(f"error: {case / 'group_vars' / 'kiosks.yml'}:2: k1: "
                                 "variable owner is a Jinja template")


def test_via_ansible_gives_the_same_devices(cli: Cli) -> None:
    if find_ansible() is None:
        pytest.skip("ansible-core is not installed (it is in the dev extra)")
    source = str(ORACLE / "folders_files" / "hosts.ini")
    ours = json.loads(cli("device", "import", "--builtin", "--dry-run", "--json", source).out)
    theirs = json.loads(cli("device", "import", "--via-ansible", "--dry-run", "--json",
                            source).out)
    assert ours["reader"] == "builtin" and theirs["reader"] == "ansible"
    keep = ("name", "address", "port", "user", "key", "proxy_jump", "groups", "labels")
    assert [{k: h[k] for k in keep} for h in ours["hosts"]] == [
        {k: h[k] for k in keep} for h in sorted(theirs["hosts"], key=lambda h: h["name"])]
    auto = cli("device", "import", source)  # Ansible is installed: used by default
    assert auto.code == 0 and "with ansible-inventory" in auto.out
    assert devices(cli)["k1"]["ssh_port"] == 2211  # from host_vars/k1.yml
    broken = cli("device", "import", "--via-ansible", str(BAD / "group_loop.yml"))
    assert broken.code == 2 and "ansible-inventory failed" in broken.err


def test_conflicts_import_nothing_unless_replace_which_keeps_state(cli: Cli) -> None:
    assert cli("device", "add", "kiosk-02", "--host", "x", "--group", "old").code == 0
    clash = cli("device", "import", "--builtin", str(DATA / "hosts.ini"))
    assert clash.code == 2 and "already exist: kiosk-02" in clash.err
    assert list(devices(cli)) == ["kiosk-02"]
    from controller.services.context import Fleet

    Fleet.open().inventory.update_device("kiosk-02", model="tiny-llama", tls=True)
    replaced = cli("device", "import", "--builtin", str(DATA / "hosts.ini"), "--replace")
    assert replaced.code == 0 and "(1 updated)" in replaced.out
    found = devices(cli)
    assert len(found) == 5
    k2 = found["kiosk-02"]
    assert (k2["host"], k2["groups"]) == ("kiosk-02", ["kiosks"])
    assert (k2["model"], k2["tls"]) == ("tiny-llama", True)  # what the fleet knew is kept


def test_via_ansible_renders_jinja_and_decrypts_vault(cli: Cli,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if find_ansible() is None:
        pytest.skip("ansible-core is not installed (it is in the dev extra)")
    source = DATA / "ansible_only" / "hosts.yml"
    ours = cli("device", "import", "--builtin", str(source))
    assert ours.code == 2 and ours.err.startswith(f"error: {source}:9: ")
    assert "!vault" in ours.err and "--via-ansible" in ours.err
    locked = cli("device", "import", "--via-ansible", str(source))
    assert locked.code == 2 and "vault" in locked.err and devices(cli) == {}
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE",
                       str(DATA / "ansible_only" / "vault-password.txt"))
    result = cli("device", "import", "--via-ansible", str(source))
    assert result.code == 0, result.err
    found = devices(cli)
    assert found["k1"]["host"] == "192.0.2.41"  # "{{ subnet }}.41", rendered by Ansible
    assert found["k1"]["labels"] == {"customer": "hall-7", "site": "berlin",
                                     "subnet": "192.0.2"}
