"""`fleet device import`: bring an Ansible inventory in, all or nothing, and say what was
mapped, what became labels and what was ignored."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from controller.adapters.ansible import read_inventory
from controller.adapters.ansible.mapping import MappedHost, Mapping, SkippedHost, map_hosts
from controller.adapters.ansible.via_ansible import find_ansible, run_ansible
from controller.adapters.tables import Device
from controller.errors import InvalidData
from controller.services.context import Fleet

READERS = ("auto", "ansible", "builtin")


@dataclass
class ImportReport:
    source: str
    reader: str  # "ansible" (ansible-inventory) or "builtin"
    hosts: list[MappedHost]
    skipped: list[SkippedHost]
    groups: list[str]
    parents: dict[str, list[str]]
    warnings: list[str]
    written: bool = False
    updated: list[str] = field(default_factory=list)  # devices that existed (--replace)

    @property
    def ignored(self) -> dict[str, list[str]]:
        """Each ignored variable -> the hosts it was ignored on."""
        out: dict[str, list[str]] = {}
        for host in self.hosts:
            for name in host.ignored:
                out.setdefault(name, []).append(host.name)
        return dict(sorted(out.items()))


def read(path: Path, reader: str = "auto") -> ImportReport:
    """Read and map an inventory with Ansible (``ansible``), our own reader (``builtin``),
    or Ansible when ``ansible-inventory`` is installed (``auto``)."""
    use_ansible = reader == "ansible" or (reader == "auto" and find_ansible() is not None)
    inventory = run_ansible(path) if use_ansible else read_inventory(path)
    mapping: Mapping = map_hosts(inventory)
    return ImportReport(str(path), "ansible" if use_ansible else "builtin", mapping.hosts,
                        mapping.skipped, mapping.groups, mapping.parents, mapping.warnings)


def import_inventory(fleet: Fleet, path: Path, replace: bool = False, reader: str = "auto",
                     dry_run: bool = False, strict: bool = False) -> ImportReport:
    report = read(path, reader)
    if not report.hosts:
        raise InvalidData(f"{path}: no hosts to import"
                          + (f" ({len(report.skipped)} skipped: not SSH)"
                             if report.skipped else ""),
                          hint="is it an Ansible inventory with hosts?")
    if strict and (report.ignored or report.skipped):
        what = [f"{name} (on {', '.join(hosts[:3])}{'...' if len(hosts) > 3 else ''})"
                for name, hosts in report.ignored.items()]
        what += [f"host {s.name} ({s.reason})" for s in report.skipped]
        raise InvalidData(f"{path}: --strict: {len(what)} ignored: {'; '.join(what[:8])}",
                          hint="remove or rename those variables, or import without "
                          "--strict; nothing was imported")
    for host in report.hosts:
        if host.profile and host.profile not in fleet.profiles:
            raise InvalidData(f"{host.origin}: {host.name}: no profile named "
                              f"{host.profile!r}", hint="`fleet profile list` shows the names; "
                              "nothing was imported")
    if dry_run:
        return report
    devices = [(Device(name=h.name, host=h.address, ssh_port=h.port, user=h.user,
                       key_path=h.key, agent_port=h.agent_port, profile=h.profile,
                       labels_json=json.dumps(h.labels), proxy_jump=h.proxy_jump),
                h.groups) for h in report.hosts]
    report.updated = fleet.inventory.add_devices(devices, report.parents, replace)
    report.written = True
    return report
