"""Read an Ansible inventory (INI or YAML) into hosts edgefleet can register.

Supported: groups, ``[group:vars]`` / ``vars:``, ``[group:children]`` / ``children:``, host
variables, numeric host ranges (``kiosk-[01:20]``). A host's fleet group is the first group
it appears in; ``ansible_host``, ``ansible_port``, ``ansible_user``,
``ansible_ssh_private_key_file`` and ``-o ProxyJump=`` in ``ansible_ssh_common_args`` map to the
device; ``edgefleet_profile`` and ``edgefleet_agent_port`` to ours; every other variable that
is not ``ansible_*`` becomes a label. Anything else is an error naming the file and line; the
caller imports nothing unless the whole file parses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.errors import InvalidData

_RANGE = re.compile(r"^(?P<pre>.*)\[(?P<a>\d+):(?P<b>\d+)\](?P<post>.*)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class InventoryHost:
    name: str
    group: str
    line: int
    vars: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.vars.get("ansible_host", self.name)

    @property
    def port(self) -> int:
        return int(self.vars.get("ansible_port", "22"))

    @property
    def user(self) -> str:
        return self.vars.get("ansible_user", "")

    @property
    def key(self) -> str:
        return self.vars.get("ansible_ssh_private_key_file", "")

    @property
    def proxy_jump(self) -> str:
        m = re.search(r"ProxyJump=(\S+)", self.vars.get("ansible_ssh_common_args", ""))
        return m.group(1).strip("'\"") if m else ""

    @property
    def profile(self) -> str:
        return self.vars.get("edgefleet_profile", "")

    @property
    def agent_port(self) -> int:
        return int(self.vars.get("edgefleet_agent_port", "50051"))

    @property
    def labels(self) -> dict[str, str]:
        return {k: v for k, v in self.vars.items()
                if not k.startswith(("ansible_", "edgefleet_"))}


def _error(path: Path, line: int, what: str) -> InvalidData:
    return InvalidData(f"{path}:{line}: {what}",
                       hint="fix that line; nothing was imported")


def _expand(pattern: str, path: Path, line: int) -> list[str]:
    m = _RANGE.match(pattern)
    if not m:
        if not _NAME.match(pattern):
            raise _error(path, line, f"unsupported host pattern {pattern!r}")
        return [pattern]
    a, b = m["a"], m["b"]
    if int(a) > int(b):
        raise _error(path, line, f"empty range in {pattern!r}")
    width = len(a) if a.startswith("0") else 0
    return [f"{m['pre']}{str(i).zfill(width)}{m['post']}" for i in range(int(a), int(b) + 1)]


def _split_vars(text: str, path: Path, line: int) -> dict[str, str]:
    import shlex

    try:
        parts = shlex.split(text)
    except ValueError as exc:
        raise _error(path, line, f"cannot parse variables ({exc})") from exc
    out = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise _error(path, line, f"expected key=value, got {part!r}")
        out[key] = value
    return out


def _resolve(hosts: dict[str, InventoryHost], group_vars: dict[str, dict[str, str]],
             children: dict[str, list[str]], memberships: dict[str, list[str]]
             ) -> list[InventoryHost]:
    parents: dict[str, list[str]] = {}
    for parent, kids in children.items():
        for kid in kids:
            parents.setdefault(kid, []).append(parent)

    def ancestry(group: str, seen: frozenset[str] = frozenset()) -> list[str]:
        out = [group]
        for parent in parents.get(group, []):
            if parent not in seen:
                out += ancestry(parent, seen | {group})
        return out

    for host in hosts.values():
        merged: dict[str, str] = dict(group_vars.get("all", {}))
        for group in memberships.get(host.name, []):
            for g in reversed(ancestry(group)):
                merged.update(group_vars.get(g, {}))
        merged.update(host.vars)
        host.vars = merged
    return list(hosts.values())


def parse_ini(text: str, path: Path) -> list[InventoryHost]:
    hosts: dict[str, InventoryHost] = {}
    memberships: dict[str, list[str]] = {}
    group_vars: dict[str, dict[str, str]] = {}
    children: dict[str, list[str]] = {}
    section, kind = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise _error(path, number, f"unclosed section header {line!r}")
            name, _, suffix = line[1:-1].partition(":")
            if suffix not in ("", "vars", "children") or not _NAME.match(name):
                raise _error(path, number, f"unsupported section [{line[1:-1]}]")
            section, kind = name, suffix or "hosts"
            continue
        if kind == "vars":
            group_vars.setdefault(section, {}).update(_split_vars(line, path, number))
        elif kind == "children":
            if not _NAME.match(line):
                raise _error(path, number, f"not a group name: {line!r}")
            children.setdefault(section, []).append(line)
        else:
            pattern, _, rest = line.partition(" ")
            host_vars = _split_vars(rest, path, number)
            for name in _expand(pattern, path, number):
                host = hosts.setdefault(name, InventoryHost(name, section, number))
                host.vars.update(host_vars)
                memberships.setdefault(name, []).append(section)
    return _resolve(hosts, group_vars, children, memberships)


def parse_yaml(text: str, path: Path) -> list[InventoryHost]:
    import yaml

    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise _error(path, (mark.line + 1) if mark else 0, f"not valid YAML ({exc})") from exc
    hosts: dict[str, InventoryHost] = {}
    memberships: dict[str, list[str]] = {}
    group_vars: dict[str, dict[str, str]] = {}
    children: dict[str, list[str]] = {}

    def mapping(node: Any, what: str) -> list[tuple[Any, Any]]:
        if node is None or (isinstance(node, yaml.ScalarNode) and node.value in ("", "~")):
            return []
        if not isinstance(node, yaml.MappingNode):
            raise _error(path, node.start_mark.line + 1, f"{what} must be a mapping")
        return list(node.value)

    def scalars(node: Any, what: str) -> dict[str, str]:
        out = {}
        for k, v in mapping(node, what):
            if not isinstance(v, yaml.ScalarNode):
                raise _error(path, v.start_mark.line + 1,
                             f"variable {k.value!r}: only plain values are supported")
            out[str(k.value)] = str(v.value)
        return out

    def group(name: str, node: Any) -> None:
        for key, value in mapping(node, f"group {name!r}"):
            if key.value == "hosts":
                for hk, hv in mapping(value, "hosts"):
                    for host_name in _expand(str(hk.value), path, hk.start_mark.line + 1):
                        host = hosts.setdefault(
                            host_name, InventoryHost(host_name, name, hk.start_mark.line + 1))
                        host.vars.update(scalars(hv, f"host {host_name!r}"))
                        memberships.setdefault(host_name, []).append(name)
            elif key.value == "vars":
                group_vars.setdefault(name, {}).update(scalars(value, "vars"))
            elif key.value == "children":
                for ck, cv in mapping(value, "children"):
                    children.setdefault(name, []).append(str(ck.value))
                    group(str(ck.value), cv)
            else:
                raise _error(path, key.start_mark.line + 1,
                             f"unsupported key {key.value!r} in group {name!r}")

    for key, value in mapping(root, "the inventory"):
        group(str(key.value), value)
    return _resolve(hosts, group_vars, children, memberships)


def read_inventory(path: Path) -> list[InventoryHost]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidData(f"cannot read {path}: {exc.strerror}",
                          hint="give the path of an Ansible inventory file") from exc
    is_yaml = path.suffix in (".yml", ".yaml") or text.lstrip().startswith(("all:", "---"))
    hosts = parse_yaml(text, path) if is_yaml else parse_ini(text, path)
    for host in hosts:
        for key in ("ansible_port", "edgefleet_agent_port"):
            if key in host.vars and not host.vars[key].isdigit():
                raise _error(path, host.line, f"{host.name}: {key} must be a number")
        if host.group in ("all", "ungrouped"):
            host.group = "ungrouped"
    return hosts
