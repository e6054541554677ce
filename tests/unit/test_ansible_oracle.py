"""ansible-core is the oracle: every inventory in tests/data/inventory/oracle is read by
`ansible-inventory --list` and by edgefleet's own reader, and every host's groups, merged
variables, address, port, user, key, jump host and labels must be identical.

Each case is a folder holding one inventory (file or directory) with, where the case is
about them, group_vars/ and host_vars/ beside it.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.ansible import read_inventory
from controller.adapters.ansible.mapping import MappedHost, map_hosts
from controller.adapters.ansible.model import ParsedInventory
from controller.adapters.ansible.via_ansible import find_ansible, from_list_json
from controller.adapters.ansible.yaml_load import Unsafe

CORPUS = Path(__file__).resolve().parents[1] / "data" / "inventory" / "oracle"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
FIELDS = ("address", "port", "user", "key", "proxy_jump", "groups", "labels")


def source_of(case: str) -> Path:
    entries = [p for p in (CORPUS / case).iterdir()
               if p.name not in ("group_vars", "host_vars")]
    assert len(entries) == 1, f"{case}: one inventory per case, found {entries}"
    return entries[0]


def ansible_list(source: Path, tmp_path: Path) -> dict[str, Any]:
    binary = find_ansible()
    if binary is None:
        pytest.skip("ansible-core is not installed (it is in the dev extra)")
    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
           "ANSIBLE_HOME": str(tmp_path), "ANSIBLE_CONFIG": str(tmp_path / "none.cfg"),
           "ANSIBLE_LOCAL_TEMP": str(tmp_path)}
    done = subprocess.run([binary, "-i", str(source), "--list"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def plain(value: Any) -> Any:
    """Our values as ansible-inventory prints them (``!unsafe`` text tagged so)."""
    if isinstance(value, Unsafe):
        return {"__ansible_unsafe": str(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return json.loads(json.dumps(value))


def expected_fields(name: str, hostvars: dict[str, Any], groups: list[str]) -> dict[str, Any]:
    """What a device must be, worked out from Ansible's own answer by Ansible's rules
    (ansible_ssh_* spellings win; ssh takes the first jump host it is given), written
    independently of the importer's mapping."""

    def first(*names: str) -> Any:
        return next((hostvars[n] for n in names if hostvars.get(n) is not None), None)

    jump = ""
    for var in ("ansible_ssh_args", "ansible_ssh_common_args", "ansible_ssh_extra_args"):
        words = shlex.split(str(hostvars.get(var) or ""))
        for i, word in enumerate(words):
            value = ""
            if word == "-J":
                value = words[i + 1]
            elif word.startswith("-J"):
                value = word[2:]
            elif word.startswith("-o") and "proxyjump" in (word[2:] or words[i + 1]).lower():
                value = (word[2:] or words[i + 1]).replace("=", " ", 1).split(" ", 1)[1]
            elif word.startswith("-o") and "proxycommand" in (word[2:] or words[i + 1]).lower():
                command = shlex.split((word[2:] or words[i + 1]).split("=", 1)[1])
                port = command[command.index("-p") + 1] if "-p" in command else ""
                value = command[-1] + (f":{port}" if port else "")
            jump = jump or value.strip()
    def text(v: Any) -> str:  # !unsafe text is text; anything not text is JSON
        if isinstance(v, dict) and set(v) == {"__ansible_unsafe"}:
            return str(v["__ansible_unsafe"])
        return v if isinstance(v, str) else json.dumps(v, sort_keys=True)

    labels = {k: text(v) for k, v in hostvars.items()
              if not k.startswith(("ansible_", "edgefleet_"))}
    return {
        "address": first("ansible_ssh_host", "ansible_host") or name,
        "port": int(first("ansible_ssh_port", "ansible_port") or 22),
        "user": first("ansible_ssh_user", "ansible_user") or "",
        "key": first("ansible_ssh_private_key_file", "ansible_private_key_file") or "",
        "proxy_jump": jump,
        "groups": sorted(groups),
        "labels": labels,
    }


def fields(host: MappedHost) -> dict[str, Any]:
    return {f: getattr(host, f) for f in FIELDS}


def direct_groups(data: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for group, body in data.items():
        for host in body.get("hosts", []) if group != "_meta" else []:
            out.setdefault(host, []).append(group)
    return out


def children(data: dict[str, Any]) -> dict[str, set[str]]:
    return {g: set(body.get("children", [])) for g, body in data.items() if g != "_meta"}


def our_children(ours: ParsedInventory) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for group, parents in ours.parents.items():
        for parent in parents or ["all"]:
            out.setdefault(parent, set()).add(group)
    return out


@pytest.mark.parametrize("case", CASES)
def test_builtin_reader_matches_ansible(case: str, tmp_path: Path) -> None:
    source = source_of(case)
    theirs = ansible_list(source, tmp_path)
    ours = read_inventory(source)
    hostvars = theirs["_meta"]["hostvars"]
    groups = direct_groups(theirs)

    # the parse itself: the same hosts, each directly in the same groups, with the same
    # variables after Ansible's precedence
    assert sorted(ours.hosts) == sorted(groups)
    for name, host in ours.hosts.items():
        assert sorted(host.groups) == sorted(groups[name]), name
        assert plain({k: v.value for k, v in host.vars.items()}) == hostvars.get(name, {}), name
    # the same nesting: Ansible lists a group only when it has hosts or children
    mine = our_children(ours)
    for group, kids in children(theirs).items():
        assert mine.get(group, set()) == kids, group

    # what becomes of each host: identical whether Ansible or we read the file, and what
    # Ansible's own variables say it must be
    via_ours = {h.name: h for h in map_hosts(ours).hosts}
    via_ansible = map_hosts(from_list_json(theirs, str(source)))
    assert {s.name for s in map_hosts(ours).skipped} == {s.name for s in via_ansible.skipped}
    assert sorted(via_ours) == sorted(h.name for h in via_ansible.hosts)
    for host in via_ansible.hosts:
        assert fields(via_ours[host.name]) == fields(host), host.name
        assert fields(host) == expected_fields(host.name, hostvars.get(host.name, {}),
                                               groups[host.name]), host.name


def test_the_corpus_covers_what_it_claims() -> None:
    assert len(CASES) >= 25
    kinds = {"dir" if source_of(c).is_dir() else (source_of(c).suffix or "none")
             for c in CASES}
    assert {".ini", ".yml", ".yaml", ".json", "none", "dir"} <= kinds
