"""`fleet device import`: bring an Ansible inventory in, all or nothing."""

from __future__ import annotations

import json
from pathlib import Path

from controller.adapters.ansible_inventory import read_inventory
from controller.adapters.tables import Device
from controller.errors import InvalidData
from controller.services.context import Fleet


def import_inventory(fleet: Fleet, path: Path, replace: bool = False) -> list[Device]:
    hosts = read_inventory(path)
    if not hosts:
        raise InvalidData(f"{path}: no hosts found", hint="is it an Ansible inventory?")
    devices = []
    for host in hosts:
        if host.profile and host.profile not in fleet.profiles:
            raise InvalidData(f"{path}:{host.line}: {host.name}: no profile named "
                              f"{host.profile!r}", hint="`fleet profile list` shows the names; "
                              "nothing was imported")
        devices.append(Device(
            name=host.name, host=host.address, ssh_port=host.port, user=host.user,
            key_path=host.key, agent_port=host.agent_port, group_name=host.group,
            profile=host.profile, labels_json=json.dumps(host.labels),
            proxy_jump=host.proxy_jump))
    fleet.inventory.add_devices(devices, replace)
    return devices
