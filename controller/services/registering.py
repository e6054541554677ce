"""Checks on what a device is registered with, wherever it enters (``device add``, the lab;
the Ansible import applies the same rules in ``controller.adapters.ansible.mapping``)."""

from __future__ import annotations

from controller.adapters.ssh import SshTarget
from controller.core.groups import check_device_name
from controller.core.hosts import check_host
from controller.services.context import Fleet


def checked_address(fleet: Fleet, name: str, host: str) -> str:
    """``host`` if it (and, for an ssh_config alias, the HostName it stands for) is an IP
    address or a host name; ``name`` must be a device name. Raises UsageError."""
    check_device_name(name)
    check_host(host)
    resolved = fleet.transfer.resolve(SshTarget(name, host, 22, "", ""))
    if resolved.hostname != host:
        check_host(resolved.hostname, f"--host {host} is an ssh_config alias whose HostName")
    return host
