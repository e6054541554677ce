"""`fleet lab up/down/restart`: start the local lab and register its devices in group ``lab``.

A lab device keeps its store across `lab up` and `lab restart` (unless `lab up --fresh`), and
so keeps what the fleet recorded about it (model, variant, labels)."""

from __future__ import annotations

import getpass
import json
from functools import partial
from pathlib import Path

from controller import lab, lab_netns, settings
from controller.adapters.tables import Device
from controller.core.groups import check_device_name
from controller.core.hosts import check_host
from controller.errors import UsageError
from controller.services.context import Fleet
from controller.services.trust import issue_agent_files

LAB_GROUP = "lab"


def _trust_lab_host_keys(devices: list[lab.LabDevice]) -> None:
    """Write the lab's own host keys to the project's known_hosts, replacing stale lab lines."""
    path = settings.known_hosts_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lab_hosts = tuple(f"[127.0.0.{lab.FIRST_HOST + i}]:" for i in range(32)) + tuple(
        f"[198.18.{i}.2]:" for i in range(32)) + tuple(
        f"[{lab_netns.SITE_NET}.{10 + i}]:" for i in range(32))
    keep = []
    if path.exists():
        keep = [ln for ln in path.read_text().splitlines()
                if ln and not ln.startswith(lab_hosts)]
    path.write_text("\n".join([*keep, *(lab.host_key_line(d) for d in devices)]) + "\n")


LAN_SITE = "lab-lan"  # the site label of the devices of `lab up --site-lan`


def lab_up(fleet: Fleet, count: int, profiles: list[str],
           secure: bool = True, agents: bool = True, netns: bool = False,
           netem: str = "", fresh: bool = False, site_lan: bool = False,
           uplink: str = "") -> list[lab.LabDevice]:
    if count < 1 or count > 32:
        raise UsageError(f"--devices {count} is out of range", hint="use 1 to 32")
    chosen = profiles or list(lab.DEFAULT_PROFILES)
    for name in chosen:
        if name not in fleet.profiles:
            raise UsageError(f"no profile named {name!r}",
                             hint="`fleet profile list` shows the names")
    chosen = [chosen[i % len(chosen)] for i in range(count)]
    # what the fleet knew about devices whose stores are kept
    before = {} if fresh else {d.name: d for d in fleet.inventory.list_devices() if d.lab}
    lab_down(fleet)
    if (site_lan or uplink) and not netns:
        raise UsageError("--site-lan and --uplink put the devices in network namespaces",
                         hint="add --netns (root)")
    if netem and site_lan:
        raise UsageError("--netem shapes each device's own link; on a site LAN the "
                         "devices share one uplink", hint="use --uplink RATE, e.g. 100mbit")
    started = lab.up(settings.lab_dir(), chosen,
                     partial(issue_agent_files, fleet) if secure else None,
                     start_agents=agents, netns=netns, netem=netem, fresh=fresh,
                     site_lan=site_lan or bool(uplink), uplink=uplink)
    try:
        _trust_lab_host_keys(started)
        key = str(lab.client_key(settings.lab_dir()))
        for d in started:
            check_device_name(d.name)  # the lab names and addresses its devices itself;
            check_host(d.address)  # they enter the inventory like any other
            row = Device(
                name=d.name, host=d.address, ssh_port=d.ssh_port, user=getpass.getuser(),
                key_path=key, agent_port=d.agent_port, profile=d.profile,
                data_dir=d.data_dir, lab=True, state="online" if agents else "registered",
                tls=secure and agents)
            if d.host_netns:  # one LAN: one site (docs/delivery.md#sites-and-peers)
                row.labels_json = json.dumps({"site": LAN_SITE})
            old = before.get(d.name)
            if old is not None and agents:
                row.model, row.variant, row.sha256 = old.model, old.variant, old.sha256
                row.labels_json, row.decode_efficiency = old.labels_json, old.decode_efficiency
                row.decode_efficiency_backend = old.decode_efficiency_backend
            fleet.inventory.add_device(row, groups=[LAB_GROUP], replace=True)
    except BaseException:
        lab_down(fleet)  # never leave processes running that nothing records
        raise
    return started


def lab_restart(fleet: Fleet, names: list[str] | None = None,
                kill: bool = False) -> list[lab.LabDevice]:
    """Restart lab agents (one, some or all), keeping their stores; the inventory follows
    their addresses."""
    restarted = lab.restart(settings.lab_dir(), names, kill=kill)
    for d in restarted:
        fleet.inventory.update_device(d.name, agent_port=d.agent_port, state="online")
    return restarted


def lab_down(fleet: Fleet) -> list[lab.LabDevice]:
    stopped = lab.down(settings.lab_dir())
    fleet.inventory.remove_devices(d.name for d in fleet.inventory.list_devices() if d.lab)
    return stopped


def lab_running(lab_dir: Path | None = None) -> list[lab.LabDevice]:
    return lab.read_registry(lab_dir or settings.lab_dir())
