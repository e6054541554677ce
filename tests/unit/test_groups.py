"""Groups by hand: a device in several groups, groups inside groups, --group selecting a
group and everything nested in it, loops refused, removal keeping the devices."""

from __future__ import annotations

import json

from tests.conftest import Cli


def names(cli: Cli, *args: str) -> list[str]:
    listed = cli("device", "list", "--json", *args)
    assert listed.code == 0, listed.err
    return [d["name"] for d in json.loads(listed.out)["devices"]]


def test_devices_in_several_nested_groups(cli: Cli) -> None:
    added = cli("device", "add", "k1", "--host", "192.0.2.1", "--group", "berlin",
                "--group", "canary")
    assert added.code == 0 and "groups berlin, canary" in added.out
    assert cli("device", "add", "k2", "--host", "192.0.2.2", "-g", "munich").code == 0
    assert cli("device", "add", "loose", "--host", "192.0.2.3").code == 0
    assert json.loads(cli("device", "show", "loose", "--json").out)["groups"] == ["ungrouped"]

    assert cli("group", "add", "germany", "--parent", "emea").code == 0
    assert cli("group", "parent", "berlin", "--add", "germany").code == 0
    assert cli("group", "parent", "munich", "--add", "germany").code == 0
    assert names(cli, "--group", "emea") == ["k1", "k2"]
    assert names(cli, "--group", "canary") == ["k1"]
    assert names(cli, "--group", "all") == ["k1", "k2", "loose"]
    plan = cli("plan", "tiny-llama", "--group", "emea", "--json")
    assert plan.code == 0, plan.err
    assert [p["device"] for p in json.loads(plan.out)["plans"]] == ["k1", "k2"]

    shown = json.loads(cli("group", "show", "emea", "--json").out)
    assert shown["children"] == ["germany"] and shown["all_devices"] == ["k1", "k2"]
    assert shown["devices"] == []

    moved = cli("device", "group", "k1", "--remove", "canary", "--add", "lab-bench")
    assert moved.code == 0 and moved.out.strip() == "k1: berlin, lab-bench"
    assert cli("device", "group", "loose", "--add", "spare").out.strip() == "loose: spare"
    assert json.loads(cli("group", "show", "ungrouped", "--json").out)["devices"] == []
    gone = cli("device", "group", "k2", "--remove", "munich")
    assert gone.out.strip() == "k2: ungrouped"


def test_loops_and_unknown_names_are_refused(cli: Cli) -> None:
    assert cli("group", "add", "child", "--parent", "parent").code == 0
    assert cli("group", "add", "grandchild", "--parent", "child").code == 0
    loop = cli("group", "parent", "parent", "--add", "grandchild")
    assert loop.code == 2 and "cannot contain" in loop.err
    self_loop = cli("group", "parent", "child", "--add", "child")
    assert self_loop.code == 2
    assert cli("group", "add", "all").code == 2
    assert cli("group", "add", "bad name").code == 2
    assert cli("group", "show", "nope").code == 2
    unknown = cli("deploy", "tiny-llama", "--group", "nope")
    assert unknown.code == 2 and "no group named 'nope'" in unknown.err
    empty = cli("plan", "tiny-llama", "--group", "parent")
    assert empty.code == 2 and "has no devices" in empty.err
    not_in = cli("group", "parent", "child", "--remove", "grandchild")
    assert not_in.code == 2 and "is not inside" in not_in.err


def test_removing_a_group_keeps_its_devices(cli: Cli) -> None:
    assert cli("device", "add", "k1", "--host", "192.0.2.1", "-g", "a", "-g", "b").code == 0
    assert cli("device", "add", "k2", "--host", "192.0.2.2", "-g", "a").code == 0
    assert cli("group", "add", "a", "--parent", "top").code == 0
    removed = cli("group", "remove", "a")
    assert removed.code == 0 and "k1, k2" in removed.out
    listed = {d["name"]: d["groups"]
              for d in json.loads(cli("device", "list", "--json").out)["devices"]}
    assert listed == {"k1": ["b"], "k2": ["ungrouped"]}
    tree = {g["name"]: g for g in json.loads(cli("group", "list", "--json").out)["groups"]}
    assert "a" not in tree and tree["top"]["children"] == []
    assert cli("device", "remove", "k1").code == 0
    assert json.loads(cli("group", "show", "b", "--json").out)["devices"] == []


def test_the_controllers_certificate_name_is_no_device_name() -> None:
    import pytest

    from controller.core.groups import check_device_name
    from controller.errors import UsageError

    with pytest.raises(UsageError, match="controller's own certificate name"):
        check_device_name("edgefleet-controller")
    assert check_device_name("edgefleet-controller-2") == "edgefleet-controller-2"
