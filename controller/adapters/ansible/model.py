"""What an Ansible inventory holds once read, and how ansible-core builds and merges it.

``InventoryBuilder`` keeps ansible-core's rules (``ansible.inventory.data`` and ``group``):
a host is created once (the port of its first entry sticks), variables set later replace
earlier ones, a group may not contain itself, and after parsing every top-level group is a
child of ``all`` and a host in no group is in ``ungrouped``. ``merged_vars`` applies
Ansible's precedence: ``all``'s inventory vars, the other groups' by (depth, priority, name),
``group_vars/all``, ``group_vars/<group>`` in the same order, the host's inventory vars,
``host_vars/<host>``; later wins, whole values (hash_behaviour=replace).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.errors import InvalidData

ALL, UNGROUPED = "all", "ungrouped"


def error(origin: str, what: str) -> InvalidData:
    return InvalidData(f"{origin}: {what}", hint="fix that line; nothing was imported")


@dataclass
class Var:
    value: Any
    origin: str  # "file:line" (or the file alone)


@dataclass
class Group:
    name: str
    vars: dict[str, Var] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    priority: int = 1


@dataclass
class Host:
    name: str
    origin: str
    vars: dict[str, Var] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)  # direct


@dataclass
class ParsedHost:
    """One host as Ansible resolves it: merged variables and the groups it is directly in."""

    name: str
    origin: str
    vars: dict[str, Var]
    groups: list[str]


@dataclass
class ParsedInventory:
    source: str
    hosts: dict[str, ParsedHost]
    parents: dict[str, list[str]]  # group -> the groups it is directly inside (not ``all``)
    groups: list[str]  # every group but ``all``, including empty ones
    warnings: list[str] = field(default_factory=list)


class InventoryBuilder:
    def __init__(self) -> None:
        self.groups: dict[str, Group] = {ALL: Group(ALL), UNGROUPED: Group(UNGROUPED)}
        self.hosts: dict[str, Host] = {}
        self.warnings: list[str] = []

    def add_group(self, name: str) -> Group:
        return self.groups.setdefault(name, Group(name))

    def add_host(self, name: str, group: str | None, port: int | None, origin: str) -> Host:
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = Host(name, origin)
            if port:
                host.vars["ansible_port"] = Var(port, origin)
        if group and name not in self.groups[group].hosts:
            self.groups[group].hosts.append(name)
            host.groups.append(group)
        return host

    def set_var(self, entity: Group | Host, key: str, value: Any, origin: str) -> None:
        if isinstance(entity, Group) and key == "ansible_group_priority":
            try:
                entity.priority = int(value)
            except (TypeError, ValueError) as exc:
                raise error(origin, f"ansible_group_priority must be a number, got "
                                    f"{value!r}") from exc
            return
        entity.vars[key] = Var(value, origin)

    def add_child(self, parent: str, child: str, origin: str) -> None:
        p = self.groups[parent]
        if child in p.children:
            return
        if child == parent or parent in self._below(child):
            raise error(origin, f"adding group {child!r} as child to {parent!r} creates a "
                                "recursive dependency loop")
        p.children.append(child)
        self.groups[child].parents.append(parent)

    def _below(self, group: str) -> set[str]:
        found, todo = {group}, [group]
        while todo:
            for kid in self.groups[todo.pop()].children:
                if kid not in found:
                    found.add(kid)
                    todo.append(kid)
        return found

    def reconcile(self) -> None:
        for name, group in self.groups.items():
            if name != ALL and not group.parents:
                self.add_child(ALL, name, "")
        ungrouped = self.groups[UNGROUPED]
        for host in self.hosts.values():
            others = set(host.groups) - {ALL, UNGROUPED}
            if others and UNGROUPED in host.groups:
                host.groups.remove(UNGROUPED)
                ungrouped.hosts.remove(host.name)
            elif not others and UNGROUPED not in host.groups:
                host.groups.append(UNGROUPED)
                ungrouped.hosts.append(host.name)
            if ALL in host.groups:  # Ansible lists a host of [all] under ungrouped only
                host.groups.remove(ALL)
                self.groups[ALL].hosts.remove(host.name)

    def depths(self) -> dict[str, int]:
        """Longest path from ``all``, as ansible-core's ``Group.depth``."""
        depth: dict[str, int] = {}

        def walk(name: str, d: int) -> None:
            if depth.get(name, -1) >= d:
                return
            depth[name] = d
            for kid in self.groups[name].children:
                walk(kid, d + 1)

        walk(ALL, 0)
        return depth

    def ancestors(self, groups: list[str]) -> set[str]:
        found: set[str] = set()
        todo = list(groups)
        while todo:
            name = todo.pop()
            if name not in found:
                found.add(name)
                todo.extend(self.groups[name].parents)
        return found

    def result(self, source: str, files: VarsFiles) -> ParsedInventory:
        self.reconcile()
        depth = self.depths()
        hosts = {}
        for host in self.hosts.values():
            mine = [g for g in self.ancestors(host.groups) if g != ALL]
            ordered = sorted(mine, key=lambda g: (depth.get(g, 0), self.groups[g].priority, g))
            merged: dict[str, Var] = dict(self.groups[ALL].vars)
            for g in ordered:
                merged.update(self.groups[g].vars)
            merged.update(files.group(ALL))
            for g in ordered:
                merged.update(files.group(g))
            merged.update(host.vars)
            merged.update(files.host(host.name))
            hosts[host.name] = ParsedHost(host.name, host.origin, merged, list(host.groups))
        parents = {name: [p for p in g.parents if p != ALL]
                   for name, g in self.groups.items() if name != ALL}
        groups = [name for name in self.groups if name != ALL]
        return ParsedInventory(source, hosts, parents, groups, self.warnings + files.warnings)


class VarsFiles:
    """group_vars/ and host_vars/ beside an inventory; none by default."""

    warnings: list[str] = []

    def group(self, name: str) -> dict[str, Var]:
        return {}

    def host(self, name: str) -> dict[str, Var]:
        return {}
